// Tables for people: `kube-proxy inspect` (a line per service port, or the whole story of the
// ones asked for) and `kube-proxy explain` (a line per way the packet can go).

import type { Explanation } from '@kube-proxy-ts/core';
import type { InspectedServicePort, InspectReport } from './report.js';

function table(header: readonly string[], rows: readonly (readonly string[])[], indent = ''): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    indent + cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function addresses(sp: InspectedServicePort): string[] {
  const hostPort = (ip: string) => `${ip.includes(':') ? `[${ip}]` : ip}:${sp.port}`;
  return [hostPort(sp.clusterIP), ...sp.externalIPs.map(hostPort), ...sp.loadBalancerIPs.map(hostPort), ...(sp.nodePort ? [`NodePort ${sp.nodePort}`] : [])];
}

function kernelSummary(sp: InspectedServicePort, family: InspectReport['families'][number] | undefined): string {
  if (!sp.kernel) return family?.kernelError ? 'unread' : 'n/a';
  if (!sp.drift) return 'in sync';
  const d = sp.drift;
  const parts = [
    ...d.missingFrontends.map((f) => `-${f}`),
    ...d.unexpectedFrontends.map((f) => `+${f}`),
    ...d.missingEndpoints.map((e) => `-${e}`),
    ...d.unexpectedEndpoints.map((e) => `+${e}`),
  ];
  return `DRIFT ${parts.join(' ')}`;
}

const yes = (b: boolean) => (b ? 'yes' : 'no');

function details(sp: InspectedServicePort, report: InspectReport): string {
  const family = report.families.find((f) => f.ipFamily === sp.ipFamily);
  const policies = [
    sp.externalTrafficPolicy ? `externalTrafficPolicy=${sp.externalTrafficPolicy}` : '',
    `internalTrafficPolicy=${sp.internalTrafficPolicy}`,
    `sessionAffinity=${sp.sessionAffinity}`,
  ].filter(Boolean);
  const out = [`${sp.servicePort}/${sp.protocol} (${sp.ipFamily})  ${sp.type}  ${policies.join(' ')}`];
  out.push(`  addresses: ${addresses(sp).join(', ')}${sp.loadBalancerSourceRanges.length ? `  (loadBalancerSourceRanges ${sp.loadBalancerSourceRanges.join(', ')})` : ''}`);
  if (sp.endpoints.length === 0) out.push('  endpoints: none in any EndpointSlice');
  else {
    out.push('  endpoints:');
    out.push(
      table(
        ['ENDPOINT', 'NODE', 'ZONE', 'READY', 'SERVING', 'TERMINATING', 'USED FOR', 'WHY NOT'],
        sp.endpoints.map((e) => [e.endpoint, e.node ?? '-', e.zone ?? '-', yes(e.ready), yes(e.serving), yes(e.terminating), e.usedFor.join(',') || '-', e.reason ?? '']),
        '    ',
      ),
    );
  }
  if (!sp.kernel) out.push(`  kernel (${report.mode}): ${family?.kernelError ?? 'not read'}`);
  else {
    out.push(`  kernel (${report.mode}):`);
    out.push(`    frontends: ${sp.kernel.frontends.join(', ') || 'none'}`);
    out.push(`    endpoints: ${sp.kernel.endpoints.join(', ') || 'none'}`);
    for (const b of sp.kernel.blocked) out.push(`    blocked:   ${b}`);
    out.push(`    objects:   ${sp.kernel.objects.join(', ') || 'none'}`);
    out.push(`  ${kernelSummary(sp, family)}`);
  }
  return out.join('\n');
}

export function formatInspect(report: InspectReport, detailed: boolean): string {
  const out: string[] = [];
  for (const f of report.families) {
    if (!f.synced) out.push(`${f.ipFamily}: no sync has completed yet`);
    if (f.kernelError) out.push(`${f.ipFamily}: the kernel could not be read: ${f.kernelError}`);
  }
  if (report.servicePorts.length === 0) {
    out.push('no matching service port');
  } else if (detailed) {
    out.push(report.servicePorts.map((sp) => details(sp, report)).join('\n\n'));
  } else {
    out.push(
      table(
        ['SERVICE PORT', 'FAMILY', 'TYPE', 'ADDRESSES', 'ENDPOINTS', 'KERNEL'],
        report.servicePorts.map((sp) => {
          const used = sp.endpoints.filter((e) => e.usedFor.length > 0).length;
          return [`${sp.servicePort}/${sp.protocol}`, sp.ipFamily, sp.type, addresses(sp).join(','), `${used}/${sp.endpoints.length}`, kernelSummary(sp, report.families.find((f) => f.ipFamily === sp.ipFamily))];
        }),
      ),
    );
  }
  for (const f of report.families) {
    if (f.unowned.length > 0) out.push(`${f.ipFamily}: left in the kernel by no current Service: ${f.unowned.join(', ')}`);
  }
  return `${out.join('\n')}\n`;
}

const percent = (p: number | undefined) => (p === undefined ? '' : `${Math.round(p * 1000) / 10}%`);

export function formatExplain(e: Explanation): string {
  const p = e.packet;
  const to = `${p.dst.includes(':') ? `[${p.dst}]` : p.dst}:${p.port}/${p.protocol}`;
  const head = `${p.src} -> ${to} (${e.mode}, ${e.ipFamily})${e.servicePort ? `: service port ${e.servicePort}` : ': no service port of this proxy'}`;
  const rows = e.paths.map((path) => [
    path.affinity ? 'pinned' : percent(path.probability),
    path.endpoint ?? '-',
    path.verdict,
    yes(path.masquerade),
    [path.steps.join(' > '), path.reason ? `(${path.reason})` : ''].filter(Boolean).join(' '),
  ]);
  return `${head}\n${table(['SHARE', 'ENDPOINT', 'VERDICT', 'MASQUERADE', 'PATH'], rows, '  ')}\n`;
}
