// Probe for a layout decision: how much of the nftables control plane's cost comes from the
// way a service chain picks an endpoint. It builds N ClusterIP services x 10 endpoints in a table
// of its own, in a network namespace of its own, three ways, and times the full build and a
// one-endpoint change:
//   anonymous: upstream's `numgen random mod 10 vmap { 0 : goto endpoint-0, ... }`
//   named-map: the same vmap as a named map per service (`vmap @<service>-endpoints`)
//   cascade:   no map, iptables-style rules `numgen random mod (10-k) 0 goto endpoint-k`
//   endpoint-map: no endpoint chains; the service chain masquerades hairpin traffic with a set of
//              its endpoints and does `dnat to numgen random mod 10 map { 0 : addr . port, ... }`
//   cascade-dnat: no endpoint chains and no set: a masquerade rule per endpoint address, then
//              `numgen random mod (10-k) 0 dnat to addr:port` rules
//   interval-map: no endpoint chains; `dnat to numgen random mod 65536 map @<service>-endpoints`,
//              a named map of intervals (one per endpoint) to addr . port, and hairpin traffic
//              masqueraded in postrouting through one set of `endpoint . endpoint` pairs. An
//              endpoint change is element updates only: no rule, no verdict, so no validation.
//   shared-map: no endpoint chains; one map for every service, `dnat to numgen random mod 10
//              offset 10i map @endpoints`; a change takes 10 fresh slots and rewrites the chain.
//              Each element added to a map walks the rules bound to it, and each rule binding it
//              walks its elements: quadratic in the services.
//   versioned-map: no endpoint chains; a named map per service and version, `dnat to numgen random
//              mod 10 map @<service>-endpoints-g<version>`; a change writes the next version's map
//              (block form: nft lists nothing) and the one-rule chain that points at it, and leaves
//              the old map for a later deletion (`delete map` makes nft 1.0.6 list every set).
// The masquerade jumps and the service-ips verdict map are the same in every layout, and so are the
// endpoint chains in the first three (a reduced form of the backend's layout). The last two
// masquerade a client that is any endpoint of the service, not only the one it lands on. Transactions hold 250 services' chains, as the
// backend's; the service-ips elements come last. Every nft call has a 60 s timeout, and sizes
// grow step by step, stopping after a build slower than 60 s.
//
// usage (root, from bench/):
//   node --conditions=@kube-proxy-ts/source --import tsx nftables-layouts.ts [--sizes 1000,5000,10000]

import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';

type Layout = 'anonymous' | 'named-map' | 'cascade' | 'endpoint-map' | 'cascade-dnat' | 'interval-map' | 'shared-map' | 'versioned-map';
const ALL_LAYOUTS: readonly Layout[] = ['anonymous', 'named-map', 'cascade', 'endpoint-map', 'cascade-dnat', 'interval-map', 'shared-map', 'versioned-map'];
const ENDPOINTS = 10;
const perTxArg = process.argv.indexOf('--per-tx');
const SERVICES_PER_TX = perTxArg > 0 ? Number(process.argv[perTxArg + 1]) : 250;
const layoutsArg = process.argv.indexOf('--layouts');
const LAYOUTS = layoutsArg > 0 ? (process.argv[layoutsArg + 1]!.split(',') as Layout[]) : ALL_LAYOUTS;
const STEP_LIMIT_MS = 60_000;
const T = 'ip kpts-layout';

const sizesArg = process.argv.indexOf('--sizes');
const sizes = (sizesArg > 0 ? process.argv[sizesArg + 1]! : '1000,5000,10000').split(',').map(Number);

const clusterIP = (i: number) => `10.96.${i >> 8}.${i & 255}`;
const endpointIP = (k: number) => `10.${128 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;

function nft(ns: string, script: string): number {
  const t0 = performance.now();
  const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: script, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`nft failed (${r.status ?? r.signal}): ${r.stderr?.toString().slice(0, 500)}`);
  return performance.now() - t0;
}

/** The chains (and map) of service `i`, whose endpoint `changed` (if any) has a new address. */
function serviceScript(layout: Layout, i: number, generation = 0): string {
  const lines: string[] = [];
  const svc = `svc-${i}`;
  const ep = (j: number) => `${svc}-ep-${j}-g${j === 3 ? generation : 0}`;
  const ips = Array.from({ length: ENDPOINTS }, (_, j) => (j === 3 && generation > 0 ? endpointIP(1_000_000 + i) : endpointIP(i * ENDPOINTS + j + 1)));
  const chainless = layout === 'endpoint-map' || layout === 'cascade-dnat' || layout === 'interval-map' || layout === 'shared-map' || layout === 'versioned-map';
  if (!chainless) {
    for (const [j, ip] of ips.entries()) {
      lines.push(`add chain ${T} ${ep(j)} {`, `\tip saddr ${ip} jump mark-for-masquerade`, `\tmeta l4proto tcp dnat to ${ip}:8080`, '}');
    }
  }
  const pick: string[] = [];
  if (layout === 'endpoint-map') {
    pick.push(`ip saddr { ${ips.join(', ')} } jump mark-for-masquerade`);
    pick.push(`meta l4proto tcp dnat to numgen random mod ${ENDPOINTS} map { ${ips.map((ip, j) => `${j} : ${ip} . 8080`).join(', ')} }`);
  }
  if (layout === 'cascade-dnat') {
    for (const ip of ips) pick.push(`ip saddr ${ip} jump mark-for-masquerade`);
    for (const [j, ip] of ips.entries()) pick.push(`${j < ENDPOINTS - 1 ? `numgen random mod ${ENDPOINTS - j} 0 ` : ''}meta l4proto tcp dnat to ${ip}:8080`);
  }
  if (layout === 'interval-map') {
    const m = `${T} ${svc}-endpoints`;
    const decl = 'typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval';
    const old = generation > 0 ? intervals(ips.map((ip, j) => (j === 3 ? endpointIP(i * ENDPOINTS + j + 1) : ip))) : [];
    const now = intervals(ips);
    const gone = old.filter((e) => !now.includes(e));
    if (gone.length > 0) lines.push(`delete element ${m} { ${gone.map((e) => e.split(' : ')[0]).join(', ')} }`);
    lines.push(`add map ${m} { ${decl} ; elements = { ${now.filter((e) => !old.includes(e)).join(', ')} } ; }`);
    if (generation > 0) return lines.join('\n'); // the chain does not change
    lines.push(`add set ${T} hairpin { type ipv4_addr . ipv4_addr ; elements = { ${ips.map((ip) => `${ip} . ${ip}`).join(', ')} } ; }`);
    pick.push(`meta l4proto tcp dnat to numgen random mod 65536 map @${svc}-endpoints`);
  }
  if (layout === 'versioned-map') {
    const m = `${svc}-endpoints-g${generation}`;
    lines.push(`add map ${T} ${m} { typeof numgen random mod ${ENDPOINTS} : ip daddr . tcp dport ; elements = { ${ips.map((ip, j) => `${j} : ${ip} . 8080`).join(', ')} } ; }`);
    lines.push(`add set ${T} hairpin { type ipv4_addr . ipv4_addr ; elements = { ${ips.map((ip) => `${ip} . ${ip}`).join(', ')} } ; }`);
    pick.push(`meta l4proto tcp dnat to numgen random mod ${ENDPOINTS} map @${m}`);
  }
  if (layout === 'shared-map') {
    const offset = (generation > 0 ? 1_000_000 + i : i) * ENDPOINTS;
    const slots = ips.map((ip, j) => `${offset + j} : ${ip} . 8080`).join(', ');
    lines.push(`add map ${T} endpoints { typeof numgen random mod 1 : ip daddr . tcp dport ; elements = { ${slots} } ; }`);
    pick.push(`meta l4proto tcp dnat to numgen random mod ${ENDPOINTS} offset ${offset} map @endpoints`);
  }
  const targets = Array.from({ length: ENDPOINTS }, (_, j) => `${j} : goto ${ep(j)}`).join(', ');
  if (layout === 'anonymous') pick.push(`numgen random mod ${ENDPOINTS} vmap { ${targets} }`);
  if (layout === 'named-map') {
    lines.push(`add map ${T} ${svc}-endpoints { typeof numgen random mod ${ENDPOINTS} : verdict ; }`);
    if (generation > 0) lines.push(`flush map ${T} ${svc}-endpoints`);
    lines.push(`add map ${T} ${svc}-endpoints { typeof numgen random mod ${ENDPOINTS} : verdict ; elements = { ${targets} } ; }`);
    pick.push(`numgen random mod ${ENDPOINTS} vmap @${svc}-endpoints`);
  }
  if (layout === 'cascade') {
    for (let j = 0; j < ENDPOINTS - 1; j++) pick.push(`numgen random mod ${ENDPOINTS - j} 0 goto ${ep(j)}`);
    pick.push(`goto ${ep(ENDPOINTS - 1)}`);
  }
  lines.push(`add chain ${T} ${svc}`);
  if (generation > 0) lines.push(`flush chain ${T} ${svc}`);
  lines.push(`add chain ${T} ${svc} {`, `\tip daddr ${clusterIP(i)} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade`, ...pick.map((r) => `\t${r}`), '}');
  return lines.join('\n');
}

/** `from-to : addr . 8080`, the numgen range split evenly among the endpoints. */
function intervals(ips: readonly string[]): string[] {
  return ips.map((ip, j) => `${Math.floor((j * 65536) / ips.length)}-${Math.floor(((j + 1) * 65536) / ips.length) - 1} : ${ip} . 8080`);
}

function setupScript(): string {
  return [
    `add table ${T}`,
    `add chain ${T} mark-for-masquerade { mark set mark or 0x4000 ; }`,
    `add set ${T} hairpin { type ipv4_addr . ipv4_addr ; }`,
    `add chain ${T} nat-postrouting { type nat hook postrouting priority 100 ; ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade ; }`,
    `add map ${T} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }`,
    `add chain ${T} services { ip daddr . meta l4proto . th dport vmap @service-ips ; }`,
    `add chain ${T} nat-prerouting { type nat hook prerouting priority -100 ; jump services ; }`,
  ].join('\n');
}

function elementsScript(from: number, to: number): string {
  const els = [];
  for (let i = from; i < to; i++) els.push(`${clusterIP(i)} . tcp . 80 : goto svc-${i}`);
  return `add map ${T} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; elements = { ${els.join(', ')} } ; }`;
}

function run(layout: Layout, n: number): { buildMs: number; changeMs: number } {
  const ns = `kpts-nftlayout-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns], { timeout: 15_000 });
  try {
    const t0 = performance.now();
    nft(ns, setupScript());
    for (let i = 0; i < n; i += SERVICES_PER_TX) {
      const scripts = [];
      for (let k = i; k < Math.min(n, i + SERVICES_PER_TX); k++) scripts.push(serviceScript(layout, k));
      nft(ns, `${scripts.join('\n')}\n`);
    }
    for (let i = 0; i < n; i += 5000) nft(ns, `${elementsScript(i, Math.min(n, i + 5000))}\n`);
    const buildMs = performance.now() - t0;
    // One endpoint of the middle service replaced: its chain rewritten, the new endpoint chain
    // added (the old one is left for a later deletion, as the backend does), or, with endpoint
    // maps, the chain alone rewritten.
    const changeMs = nft(ns, `${serviceScript(layout, n >> 1, 1)}\n`);
    return { buildMs, changeMs };
  } finally {
    execFileSync('ip', ['netns', 'del', ns], { timeout: 60_000 });
  }
}

if (process.getuid?.() !== 0) {
  console.log('nftables layouts probe skipped: needs root');
} else {
  console.log(`nftables layouts: ${ENDPOINTS} endpoints per service, ${SERVICES_PER_TX} services per transaction; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log('| layout | services | full build | one-endpoint change |\n|---|---:|---:|---:|');
  const stopped = new Set<Layout>();
  for (const n of sizes) {
    for (const layout of LAYOUTS) {
      if (stopped.has(layout)) continue;
      const r = run(layout, n);
      console.log(`| ${layout} | ${n} | ${(r.buildMs / 1000).toFixed(2)} s | ${r.changeMs.toFixed(0)} ms |`);
      if (r.buildMs > STEP_LIMIT_MS) stopped.add(layout);
    }
  }
  console.log(`load at the end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
}
