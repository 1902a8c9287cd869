// `pnpm demo`: a kube-proxy on a throw-away "node" made of network namespaces. Three pods answer
// with their names; the daemon reads a Service (ClusterIP + NodePort), its EndpointSlice and the
// cluster's ServiceCIDR from a manifest file, programs the node in the chosen mode, and we curl the Service from a pod-like
// client and from outside the node. Everything is removed at the end, also on Ctrl-C or failure.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createSandbox, type Sandbox } from '@kube-proxy-ts/netns';
import { stringify } from 'yaml';

const CLUSTER_IP = '10.96.0.10';
const SERVICE_PORT = 80;
const NODE_PORT = 30080;
const POD_PORT = 8080;
const NODE_NAME = 'node1';
const REQUESTS = 6;

function usageText(): string {
  return [
    'Usage: pnpm demo [-- --mode iptables|nftables|ipvs|userspace] [--keep-logs]',
    '',
    'Creates network namespaces (a node, three pods, a client and an outside host), runs the',
    'built kube-proxy inside the node namespace with --manifests, curls a ClusterIP and a NodePort',
    'and prints which pod answered. Needs root (network namespaces). Removes everything at the end.',
  ].join('\n');
}

export function demoManifests(sb: Pick<Sandbox, 'node' | 'pods' | 'plan'>): string {
  const nodeObj = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: NODE_NAME, labels: { 'kubernetes.io/hostname': NODE_NAME } },
    spec: { podCIDR: sb.plan.podCIDR, podCIDRs: [sb.plan.podCIDR] },
    status: { addresses: [{ type: 'InternalIP', address: sb.node.ip }, { type: 'Hostname', address: NODE_NAME }] },
  };
  const svc = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'demo' },
    spec: {
      type: 'NodePort',
      clusterIP: CLUSTER_IP,
      clusterIPs: [CLUSTER_IP],
      ipFamilies: ['IPv4'],
      ports: [{ name: 'http', port: SERVICE_PORT, targetPort: POD_PORT, nodePort: NODE_PORT, protocol: 'TCP' }],
      selector: { app: 'web' },
      externalTrafficPolicy: 'Cluster',
      sessionAffinity: 'None',
    },
  };
  const slice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc12', namespace: 'demo', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: POD_PORT, protocol: 'TCP' }],
    endpoints: sb.pods.map((p) => ({
      addresses: [p.ip],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: NODE_NAME,
      targetRef: { kind: 'Pod', namespace: 'demo', name: p.name },
    })),
  };
  // The range ClusterIPs come from (nftables mode drops traffic to its unallocated addresses).
  const serviceCIDR = { apiVersion: 'networking.k8s.io/v1', kind: 'ServiceCIDR', metadata: { name: 'kubernetes' }, spec: { cidrs: [sb.plan.serviceCIDR] } };
  return [nodeObj, svc, slice, serviceCIDR].map((d) => stringify(d)).join('---\n');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2).filter((a) => a !== '--'),
    options: { mode: { type: 'string', default: 'iptables' }, help: { type: 'boolean', short: 'h' }, 'keep-logs': { type: 'boolean' } },
  });
  if (values.help) {
    console.log(usageText());
    return 0;
  }
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    console.error('The demo creates network namespaces, which needs root. Run it as root, e.g.: sudo pnpm demo');
    return 1;
  }
  const mode = values.mode as string;
  const cli = fileURLToPath(new URL('./cli.js', import.meta.url));

  let sb: Sandbox | undefined;
  let daemon: ChildProcess | undefined;
  let dir: string | undefined;
  let interrupted = false;
  let tearingDown: Promise<void> | undefined;
  // One teardown, whoever asks first (the normal end, a failure or a signal); all wait for it.
  const teardown = () => (tearingDown ??= doTeardown());
  const doTeardown = async () => {
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await Promise.race([new Promise((r) => daemon?.once('exit', r)), sleep(5000)]);
      if (daemon.exitCode === null) daemon.kill('SIGKILL');
    }
    await sb?.destroy();
    if (dir && !values['keep-logs']) rmSync(dir, { recursive: true, force: true });
    console.log('\nCleaned up: the daemon is stopped and every demo namespace is deleted.');
  };
  // Stays installed: a second Ctrl-C must not kill the process half-way through the teardown.
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.log('\nInterrupted; cleaning up...');
    void teardown().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    console.log(`kube-proxy demo, mode ${mode}`);
    console.log('Creating the sandbox: a node, three pods (each answers with its name), a client pod and an outside host...');
    sb = await createSandbox({ tag: 'demo', pods: 3, ports: [POD_PORT] });
    dir = mkdtempSync(join(tmpdir(), 'kpts-demo-'));
    const manifest = join(dir, 'manifests.yaml');
    writeFileSync(manifest, demoManifests(sb));
    const logFile = join(dir, 'kube-proxy.log');
    console.log(`  node ${sb.node.ip}, pods ${sb.pods.map((p) => `${p.name}=${p.ip}`).join(' ')}, client ${sb.client.ip}, outside ${sb.external.ip}`);
    console.log(`  Service demo/web: ClusterIP ${CLUSTER_IP}:${SERVICE_PORT}, NodePort ${NODE_PORT} -> pods :${POD_PORT} (manifest ${manifest})`);

    const argv = [cli, `--manifests=${manifest}`, `--proxy-mode=${mode}`, `--hostname-override=${NODE_NAME}`, `--cluster-cidr=${sb.plan.clusterCIDR}`, '--v=2'];
    console.log(`Starting the daemon inside ${sb.netns('node')}:\n  kube-proxy ${argv.slice(1).join(' ')}`);
    const logFd = openSync(logFile, 'w');
    daemon = spawn('ip', ['netns', 'exec', sb.netns('node'), process.execPath, ...argv], { stdio: ['ignore', logFd, logFd] });
    const exited = new Promise<number>((r) => daemon?.once('exit', (code) => r(code ?? 1)));

    // Ready when /healthz answers and a first sync has been recorded.
    const deadline = Date.now() + 30_000;
    let ready = false;
    while (Date.now() < deadline && daemon.exitCode === null) {
      const m = await sb.exec('node', ['curl', '-s', '--max-time', '1', 'http://127.0.0.1:10249/metrics']);
      if (/kubeproxy_sync_proxy_rules_last_timestamp_seconds\{[^}]*\} [1-9]/.test(m.stdout)) {
        ready = true;
        break;
      }
      await sleep(300);
    }
    if (!ready) {
      const code = await Promise.race([exited, sleep(100).then(() => undefined)]);
      console.error(`The daemon did not become ready${code !== undefined ? ` (it exited with code ${code})` : ''}. Its log:`);
      console.error(readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n'));
      return 1;
    }
    console.log('The daemon has synced its rules.\n');

    const box = sb;
    const probe = async (title: string, from: string, host: string, port: number) => {
      console.log(`${title}: curl http://${host}:${port}/ from ${from}`);
      const seen: Record<string, number> = {};
      for (let i = 1; i <= REQUESTS; i++) {
        const r = await box.tryHttp(from, host, port, { timeoutMs: 3000 });
        const who = r.ok ? r.body.trim() : `failed (${r.error})`;
        seen[who] = (seen[who] ?? 0) + 1;
        console.log(`  request ${i}: answered by ${who}`);
      }
      return seen;
    };
    const c = await probe('ClusterIP', 'client', CLUSTER_IP, SERVICE_PORT);
    const n = await probe('\nNodePort', 'external', sb.node.ip, NODE_PORT);

    const healthz = await sb.exec('node', ['curl', '-s', '-i', '--max-time', '2', 'http://127.0.0.1:10256/healthz']);
    console.log('\n/healthz (port 10256):');
    for (const line of healthz.stdout.split(/\r?\n/).filter((l) => /^HTTP|^\{/.test(l))) console.log(`  ${line}`);
    const metrics = await sb.exec('node', ['curl', '-s', '--max-time', '2', 'http://127.0.0.1:10249/metrics']);
    console.log('\nA few metrics (port 10249):');
    const wanted = /^kubeproxy_(sync_proxy_rules_duration_seconds_(count|sum)|sync_proxy_rules_last_timestamp_seconds|sync_proxy_rules_endpoint_changes_total|sync_proxy_rules_service_changes_total|sync_proxy_rules_iptables_total|proxy_healthz_total)/;
    for (const line of metrics.stdout.split('\n').filter((l) => wanted.test(l))) console.log(`  ${line}`);

    const ok = (seen: Record<string, number>) => Object.keys(seen).every((k) => /^pod\d$/.test(k));
    const pods = new Set([...Object.keys(c), ...Object.keys(n)].filter((k) => /^pod\d$/.test(k)));
    console.log(`\n${ok(c) && ok(n) ? 'Every request reached a pod' : 'Some requests failed'}; pods that answered: ${[...pods].sort().join(', ') || 'none'}.`);
    return ok(c) && ok(n) ? 0 : 1;
  } catch (err) {
    if (!interrupted) console.error(`Demo failed: ${(err as Error).message}`);
    return interrupted ? 130 : 1;
  } finally {
    await teardown();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then((code) => process.exit(code));
}
