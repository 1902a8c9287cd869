// The built daemon against the real kube-apiserver and etcd of the release e2e/kubernetes pins
// (built by scripts/build-kubernetes.sh), all inside the sandbox's node namespace. The daemon
// authenticates as deploy/rbac.yaml's service account with a token from the TokenRequest API,
// and talks to its own kube-apiserver ("node-local", watch cache off, so watches are served by
// etcd itself); the suite writes through a second one ("admin") on the same etcd, so it can
// change the cluster while the daemon's server is down or frozen. Every scenario ends with
// traffic, and with the kernel's rules matching what the API holds.
//
// Skipped when the binaries are not built, unless CI is set: then missing binaries fail.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CoreV1Api,
  DiscoveryV1Api,
  EventsV1Api,
  RbacAuthorizationV1Api,
  type EventsV1Event,
  type V1ClusterRole,
  type V1ClusterRoleBinding,
  type V1EndpointSlice,
  type V1PolicyRule,
  type V1Service,
  type V1ServiceAccount,
} from '@kubernetes/client-node';
import type { Explanation } from '@kube-proxy-ts/core';
import { parseIptablesSave, splitRuleArgs } from '@kube-proxy-ts/netfilter';
import { createSandbox, endpointSlice, node, sandboxUnsupportedReason, service, type Sandbox } from '@kube-proxy-ts/testing';
import { parseAllDocuments } from 'yaml';
import { type ApiServer, ControlPlane, NetnsProcess, kubernetesBinariesMissing, kubernetesVersion, waitUntil } from './real-cluster.js';
import { answers, expectRefusedAtOnce } from './traffic.js';

const CLI = fileURLToPath(new URL('../apps/kube-proxy/dist/cli.js', import.meta.url));
const RBAC_YAML = fileURLToPath(new URL('../deploy/rbac.yaml', import.meta.url));
const NODE_NAME = 'node1';
const NS = 'e2e';
const SERVICE_CIDR = '10.96.0.0/16';
const WEB_IP = '10.96.0.50';
const LATE_IP = '10.96.0.51';
const EMPTY_IP = '10.96.0.52';
const TARGET_PORT = 8080;
/** The daemon's watchdog: a silent watch is restarted after this long (default 5 min). */
const WATCH_IDLE_TIMEOUT_S = 15;
const BULK = 5000;
const LIMITED_SA = 'kube-proxy-without-servicecidrs';

function unsupportedReason(): { reason: string; required: boolean } | undefined {
  const sandbox = sandboxUnsupportedReason(['iptables-restore', 'iptables-save', 'openssl']);
  if (sandbox) return { reason: sandbox, required: false };
  // In CI the programs are built before the tests run: their absence is a failure, not a skip.
  const required = process.env.CI === 'true' || process.env.CI === '1';
  const binaries = kubernetesBinariesMissing();
  if (binaries) return { reason: `Kubernetes ${kubernetesVersion()} is not built: ${binaries}`, required };
  if (!existsSync(CLI)) return { reason: `the daemon is not built (${CLI} is missing: run pnpm build)`, required };
  return undefined;
}

const unsupported = unsupportedReason();
if (unsupported && !unsupported.required) console.log(`real kube-apiserver e2e skipped: ${unsupported.reason}`);

describe.runIf(unsupported?.required)('kube-proxy against the real kube-apiserver: prerequisites (CI)', () => {
  it('has the Kubernetes binaries and the built daemon', () => {
    throw new Error(`CI is set, so this suite must run: ${unsupported?.reason}`);
  });
});

/** The ServiceAccount, ClusterRole and ClusterRoleBinding of deploy/rbac.yaml. */
function rbacManifest(): { account: V1ServiceAccount; role: V1ClusterRole; binding: V1ClusterRoleBinding } {
  const docs = parseAllDocuments(readFileSync(RBAC_YAML, 'utf8')).map((d) => d.toJS() as { kind: string });
  const find = <T>(kind: string) => {
    const doc = docs.find((d) => d.kind === kind);
    if (!doc) throw new Error(`${RBAC_YAML} has no ${kind}`);
    return doc as T;
  };
  return { account: find('ServiceAccount'), role: find('ClusterRole'), binding: find('ClusterRoleBinding') };
}

function serviceAccountUser(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

/** Does some rule grant `verb` on `group/resource`? (RBAC's matching, without resourceNames.) */
function allows(rules: readonly V1PolicyRule[], group: string, resource: string, verb: string): boolean {
  const has = (list: readonly string[] | undefined, v: string) => (list ?? []).includes(v) || (list ?? []).includes('*');
  return rules.some((r) => has(r.apiGroups, group) && has(r.resources, resource) && has(r.verbs, verb) && !(r.resourceNames?.length));
}

/** Every (group, resource, verb) the rules grant, as "group/resource:verb" ("" is the core group). */
function grants(rules: readonly V1PolicyRule[]): Set<string> {
  const out = new Set<string>();
  for (const r of rules) {
    for (const g of r.apiGroups ?? []) for (const res of r.resources ?? []) for (const v of r.verbs ?? []) out.add(`${g}/${res}:${v}`);
  }
  return out;
}

/** What a Service's ClusterIP port should lead to: ip:port -> the ready endpoints' ip:port. */
type ServiceMap = Map<string, Set<string>>;

/** From the API: every IPv4 ClusterIP port, with the ready endpoints of its slices. */
function expectedFromApi(services: V1Service[], slices: V1EndpointSlice[]): ServiceMap {
  const out: ServiceMap = new Map();
  for (const svc of services) {
    const ip = svc.spec?.clusterIP;
    if (!ip || ip === 'None' || ip.includes(':') || svc.spec?.type === 'ExternalName') continue;
    const mine = slices.filter(
      (s) => s.metadata?.namespace === svc.metadata?.namespace && s.metadata?.labels?.['kubernetes.io/service-name'] === svc.metadata?.name && s.addressType === 'IPv4',
    );
    for (const port of svc.spec?.ports ?? []) {
      const eps = new Set<string>();
      for (const s of mine) {
        const p = (s.ports ?? []).find((sp) => (sp.name ?? '') === (port.name ?? '') && (sp.protocol ?? 'TCP') === (port.protocol ?? 'TCP'));
        if (!p?.port) continue;
        for (const e of s.endpoints) if (e.conditions?.ready !== false) eps.add(`${e.addresses[0]}:${p.port}`);
      }
      out.set(`${ip}:${port.port}`, eps);
    }
  }
  return out;
}

/**
 * From the kernel: nat KUBE-SERVICES' ClusterIP rules through KUBE-SVC- chains to the KUBE-SEP-
 * chains' DNAT targets, plus filter KUBE-SERVICES' "has no endpoints" rejects (empty sets).
 */
function programmed(save: string): ServiceMap {
  const tables = parseIptablesSave(save);
  const nat = tables.get('nat');
  const filter = tables.get('filter');
  const out: ServiceMap = new Map();
  const arg = (args: string[], flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const key = (args: string[]) => `${arg(args, '-d')?.replace(/\/32$/, '')}:${arg(args, '--dport')}`;
  for (const rule of nat?.get('KUBE-SERVICES')?.rules ?? []) {
    const args = splitRuleArgs(rule);
    const target = arg(args, '-j');
    if (!target?.startsWith('KUBE-SVC-') || !arg(args, '-d')) continue;
    const eps = new Set<string>();
    for (const svcRule of nat?.get(target)?.rules ?? []) {
      const sep = arg(splitRuleArgs(svcRule), '-j');
      if (!sep?.startsWith('KUBE-SEP-')) continue;
      for (const sepRule of nat?.get(sep)?.rules ?? []) {
        const dest = arg(splitRuleArgs(sepRule), '--to-destination');
        if (dest) eps.add(dest);
      }
    }
    out.set(key(args), eps);
  }
  for (const rule of filter?.get('KUBE-SERVICES')?.rules ?? []) {
    const args = splitRuleArgs(rule);
    if (arg(args, '-j') === 'REJECT' && arg(args, '-d')) out.set(key(args), new Set());
  }
  return out;
}

function sortedEntries(m: ServiceMap): Array<[string, string[]]> {
  return [...m.entries()].map(([k, v]) => [k, [...v].sort()] as [string, string[]]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Where the kernel and the API differ, a few lines (a diff of 5 000 Services would hide the daemon's log). */
function mismatch(want: ServiceMap, have: ServiceMap): string[] {
  const show = (v: Set<string> | undefined) => (v ? `[${[...v].sort().join(' ')}]` : 'absent');
  const keys = [...new Set([...want.keys(), ...have.keys()])].sort();
  const differ = keys.filter((k) => show(want.get(k)) !== show(have.get(k)));
  const lines = differ.slice(0, 8).map((k) => `${k}: API ${show(want.get(k))}, kernel ${show(have.get(k))}`);
  if (differ.length > 8) lines.push(`... ${differ.length} of ${keys.length} service ports differ (API ${want.size}, kernel ${have.size})`);
  return lines;
}

/** Objects as a client sends them to create: no uid or resourceVersion (the server assigns them). */
function forCreate<T extends { metadata?: { uid?: string; resourceVersion?: string } }>(obj: T): T {
  delete obj.metadata?.uid;
  delete obj.metadata?.resourceVersion;
  return obj;
}

describe.skipIf(unsupported !== undefined)(`kube-proxy against the real kube-apiserver (Kubernetes ${unsupported ? '' : kubernetesVersion()}, iptables mode)`, () => {
  let sb: Sandbox;
  let dir: string;
  let cp: ControlPlane;
  let admin: ApiServer;
  let local: ApiServer;
  let core: CoreV1Api;
  let discovery: DiscoveryV1Api;
  let rbac: RbacAuthorizationV1Api;
  let events: EventsV1Api;
  let daemon: NetnsProcess | undefined;
  let kubeconfig: string;
  let limitedKubeconfig: string;
  let ours: V1ClusterRole;
  const proxyUser = serviceAccountUser('kube-system', 'kube-proxy');
  const limitedUser = serviceAccountUser('kube-system', LIMITED_SA);
  let daemons = 0;

  const startDaemon = async (config: string, extraArgs: readonly string[] = []): Promise<NetnsProcess> => {
    const d = new NetnsProcess(
      'kube-proxy-ts',
      sb.netns('node'),
      [
        process.execPath, CLI, `--kubeconfig=${config}`, '--proxy-mode=iptables', `--hostname-override=${NODE_NAME}`,
        `--cluster-cidr=${sb.plan.clusterCIDR}`, '--iptables-min-sync-period=500ms', '--iptables-sync-period=30s',
        '--healthz-bind-address=127.0.0.1:10256', '--metrics-bind-address=127.0.0.1:10249', '--v=2', ...extraArgs,
      ],
      join(dir, `daemon-${++daemons}.log`),
      { ...process.env, KUBE_PROXY_WATCH_IDLE_TIMEOUT: `${WATCH_IDLE_TIMEOUT_S}s` },
    );
    daemon = d;
    return d;
  };
  const daemonLog = () => daemon?.lastLines(25) ?? '';
  const waitFor = (what: string, check: () => Promise<boolean>, timeoutMs: number) =>
    waitUntil(what, async () => {
      if (daemon && !daemon.running) throw new Error(`the daemon exited:\n${daemonLog()}`);
      return check();
    }, timeoutMs, daemonLog);

  const apiView = async (): Promise<ServiceMap> => {
    const services = (await core.listServiceForAllNamespaces()).items;
    const slices = (await discovery.listEndpointSliceForAllNamespaces()).items;
    return expectedFromApi(services, slices);
  };
  const kernelView = async (): Promise<ServiceMap> => programmed(await sb.execOk('node', ['iptables-save'], { timeoutMs: 30_000 }));
  /** The kernel's ClusterIP rules and endpoints are exactly the API's, within `timeoutMs`. */
  const rulesMatchApi = async (timeoutMs: number) => {
    let want: ServiceMap = new Map();
    let have: ServiceMap = new Map();
    await waitFor('the rules to match the API', async () => {
      want = await apiView();
      have = await kernelView();
      return JSON.stringify(sortedEntries(want)) === JSON.stringify(sortedEntries(have));
    }, timeoutMs).catch(() => undefined);
    const differ = mismatch(want, have);
    expect(differ, `the kernel's rules against the API; the daemon (${daemon?.running ? 'running' : 'exited'}) said:\n${daemonLog()}`).toEqual([]);
  };
  /** The pods the web Service's address reaches, sampled until each of `expected` answered (see answers). */
  const web = (expected: string[]) => answers(sb, 'client', WEB_IP, 80, 8, expected);
  const webIs = async (pods: string[], timeoutMs: number) => {
    const want = JSON.stringify([...pods].sort());
    // Not sampled until the pods answer: while the rules are not there yet, a short look and a retry.
    await waitFor(`${WEB_IP} to reach ${pods.join(', ')}`, async () => JSON.stringify([...(await answers(sb, 'client', WEB_IP, 80, pods.length * 4))].sort()) === want, timeoutMs);
  };
  /** `kube-proxy explain` of the running daemon, as pod names (or the verdict of a path that reaches none). */
  const explained = async (to: string) => {
    const out = await sb.execOk('node', [process.execPath, CLI, 'explain', '--from', sb.client.ip, '--to', to, '-o', 'json'], { timeoutMs: 30_000 });
    const e = JSON.parse(out) as Explanation;
    return [...new Set(e.paths.map((p) => (p.endpoint ? (sb.pods.find((q) => p.endpoint === `${q.ip}:${TARGET_PORT}`)?.name ?? p.endpoint) : p.verdict)))].sort();
  };
  const setWebEndpoints = async (pods: string[]) => {
    const slice = endpointSlice(NS, 'web', {
      name: 'web-1',
      endpoints: sb.pods.filter((p) => pods.includes(p.name)).map((p) => ({ ip: p.ip, nodeName: NODE_NAME })),
      ports: [{ name: 'http', port: TARGET_PORT }],
    });
    await discovery.replaceNamespacedEndpointSlice({ namespace: NS, name: 'web-1', body: forCreate(slice) });
  };
  const metric = async (name: string): Promise<number> => {
    const text = await sb.execOk('node', ['curl', '-s', '--max-time', '3', 'http://127.0.0.1:10249/metrics']);
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').pop());
    return sum;
  };

  beforeAll(async () => {
    sb = await createSandbox({ tag: 'rapi', pods: 3, ports: [TARGET_PORT] });
    dir = mkdtempSync(join(tmpdir(), 'kpts-rapi-'));
    const started = Date.now();
    cp = await ControlPlane.start({ netns: sb.netns('node'), dir, advertiseAddress: sb.node.ip, serviceCIDR: SERVICE_CIDR, auditedUsers: [proxyUser, limitedUser] });
    [admin, local] = await Promise.all([cp.startApiServer('admin'), cp.startApiServer('node-local', { watchCache: false })]);
    console.log(`real kube-apiserver e2e: etcd and two kube-apiservers ready after ${Date.now() - started} ms (logs in ${dir})`);
    const kc = cp.adminKubeConfig(admin);
    core = kc.makeApiClient(CoreV1Api);
    discovery = kc.makeApiClient(DiscoveryV1Api);
    rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    events = kc.makeApiClient(EventsV1Api);

    // deploy/rbac.yaml as it is, and a copy of its role without ServiceCIDRs for the 403 case.
    await waitFor('namespace kube-system', async () => (await core.readNamespace({ name: 'kube-system' })).metadata?.name === 'kube-system', 30_000);
    const manifest = rbacManifest();
    ours = manifest.role;
    await core.createNamespacedServiceAccount({ namespace: 'kube-system', body: manifest.account });
    await rbac.createClusterRole({ body: manifest.role });
    await rbac.createClusterRoleBinding({ body: manifest.binding });
    const limitedRules = (manifest.role.rules ?? []).filter((r) => !(r.resources ?? []).includes('servicecidrs'));
    await core.createNamespacedServiceAccount({ namespace: 'kube-system', body: { metadata: { name: LIMITED_SA } } });
    await rbac.createClusterRole({ body: { metadata: { name: LIMITED_SA }, rules: limitedRules } });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: LIMITED_SA },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: LIMITED_SA },
        subjects: [{ kind: 'ServiceAccount', name: LIMITED_SA, namespace: 'kube-system' }],
      },
    });
    const token = async (name: string) => {
      const r = await core.createNamespacedServiceAccountToken({ namespace: 'kube-system', name, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
      const t = r.status?.token;
      if (!t) throw new Error(`no token for ${name}`);
      return t;
    };
    kubeconfig = cp.writeKubeconfig(join(dir, 'kube-proxy.kubeconfig'), local, 'kube-proxy', await token(manifest.account.metadata?.name ?? ''));
    limitedKubeconfig = cp.writeKubeconfig(join(dir, 'limited.kubeconfig'), local, LIMITED_SA, await token(LIMITED_SA));

    await core.createNamespace({ body: { metadata: { name: NS } } });
    await core.createNode({ body: forCreate(node(NODE_NAME, { addresses: [sb.node.ip], podCIDRs: [sb.plan.podCIDR] })) });
    await core.createNamespacedService({
      namespace: NS,
      body: forCreate(service(NS, 'web', { clusterIP: WEB_IP, ports: [{ name: 'http', port: 80, targetPort: TARGET_PORT }] })),
    });
    await discovery.createNamespacedEndpointSlice({
      namespace: NS,
      body: forCreate(endpointSlice(NS, 'web', { name: 'web-1', endpoints: [{ ip: sb.pods[0]!.ip, nodeName: NODE_NAME }], ports: [{ name: 'http', port: TARGET_PORT }] })),
    });
    await startDaemon(kubeconfig);
    await webIs(['pod1'], 60_000);
  }, 240_000);

  afterAll(async () => {
    await daemon?.stop();
    await cp?.stop();
    await sb?.destroy();
    if (dir && !process.env.KPTS_KEEP_LOGS) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('follows Services and EndpointSlices written to the API: traffic and rules match it', async () => {
    await setWebEndpoints(['pod1', 'pod2']);
    await webIs(['pod1', 'pod2'], 10_000);
    expect(await explained(`${WEB_IP}:80/TCP`)).toEqual(['pod1', 'pod2']);
    await core.createNamespacedService({ namespace: NS, body: forCreate(service(NS, 'empty', { clusterIP: EMPTY_IP, ports: [{ name: 'http', port: 80, targetPort: TARGET_PORT }] })) });
    await waitFor('the service without endpoints to be refused', async () => !(await sb.tryHttp('client', EMPTY_IP, 80, { timeoutMs: 1000 })).ok, 10_000);
    await expectRefusedAtOnce(sb, 'client', EMPTY_IP, 80);
    expect(await explained(`${EMPTY_IP}:80/TCP`)).toEqual(['reject']);
    await rulesMatchApi(10_000);
  });

  it('records a "Starting" Event on its Node, as upstream does', async () => {
    let found: EventsV1Event | undefined;
    await waitFor('the Starting event', async () => {
      const list = await events.listNamespacedEvent({ namespace: 'default' });
      found = list.items.find((e) => e.regarding?.kind === 'Node' && e.regarding.name === NODE_NAME && e.reason === 'Starting');
      return found !== undefined;
    }, 10_000);
    expect(found).toMatchObject({ type: 'Normal', action: 'StartKubeProxy', reportingController: 'kube-proxy' });
    expect(found?.reportingInstance).toMatch(/^kube-proxy-/);
  });

  it("deploy/rbac.yaml grants what the daemon uses; differences from upstream's system:node-proxier are printed", async () => {
    const upstream = await rbac.readClusterRole({ name: 'system:node-proxier' });
    const mine = grants(ours.rules ?? []);
    const theirs = grants(upstream.rules ?? []);
    const onlyUpstream = [...theirs].filter((g) => !mine.has(g)).sort();
    const onlyOurs = [...mine].filter((g) => !theirs.has(g)).sort();
    console.log(`rbac: granted by system:node-proxier, not by deploy/rbac.yaml: ${onlyUpstream.join(', ') || 'nothing'}`);
    console.log(`rbac: granted by deploy/rbac.yaml, not by system:node-proxier: ${onlyOurs.join(', ') || 'nothing'}`);

    // What the daemon asked for, from the audit log of its API server.
    const events = cp.auditEvents(local).filter((e) => e.user.username === proxyUser && e.objectRef?.resource);
    const used = new Set(events.map((e) => `${e.objectRef?.apiGroup ?? ''}/${e.objectRef?.resource}${e.objectRef?.subresource ? `/${e.objectRef.subresource}` : ''}:${e.verb}`));
    console.log(`rbac: the daemon used ${[...used].sort().join(', ')}`);
    expect(used.size).toBeGreaterThanOrEqual(6);
    const missing = [...used].filter((u) => {
      const [gr, verb] = u.split(':') as [string, string];
      const slash = gr.indexOf('/');
      return !allows(ours.rules ?? [], gr.slice(0, slash), gr.slice(slash + 1), verb);
    });
    expect(missing, 'used by the daemon but not granted by deploy/rbac.yaml').toEqual([]);
    const forbidden = events.filter((e) => e.responseStatus?.code === 403).map((e) => `${e.verb} ${e.requestURI}`);
    expect(forbidden, 'requests of the daemon the API server refused').toEqual([]);
  });

  it('keeps serving while its kube-apiserver is down, and applies what changed meanwhile once it is back', async () => {
    await local.process.kill();
    try {
      expect(await web(['pod1', 'pod2'])).toEqual(new Set(['pod1', 'pod2']));
      // Written through the other API server while the daemon's is gone.
      await setWebEndpoints(['pod3']);
      await core.createNamespacedService({ namespace: NS, body: forCreate(service(NS, 'late', { clusterIP: LATE_IP, ports: [{ name: 'http', port: 80, targetPort: TARGET_PORT }] })) });
      await discovery.createNamespacedEndpointSlice({
        namespace: NS,
        body: forCreate(endpointSlice(NS, 'late', { name: 'late-1', endpoints: [{ ip: sb.pods[0]!.ip, nodeName: NODE_NAME }], ports: [{ name: 'http', port: TARGET_PORT }] })),
      });
      await new Promise((r) => setTimeout(r, 3000));
      expect(await web(['pod1', 'pod2']), 'the daemon cannot know yet').toEqual(new Set(['pod1', 'pod2']));
      expect(daemon?.running).toBe(true);

      const auditBefore = cp.auditEvents(local).length;
      await cp.startApiServer('node-local');
      // The informers' backoff is at most 30 s (+50 % jitter).
      await webIs(['pod3'], 60_000);
      await waitFor(`${LATE_IP} to reach pod1`, async () => [...(await answers(sb, 'client', LATE_IP, 80, 4))].join() === 'pod1', 10_000);
      await rulesMatchApi(10_000);
      // Every informer watches again, ServiceCIDRs included: a kube-apiserver that has just started
      // answers 403 until its RBAC caches are filled, which must not end the ServiceCIDR watch.
      const watching = async () =>
        new Set(
          cp
            .auditEvents(local)
            .slice(auditBefore)
            .filter((e) => e.user.username === proxyUser && e.verb === 'watch' && e.responseStatus?.code === 200)
            .map((e) => e.objectRef?.resource),
        );
      await waitFor('watches of all four resources', async () => (await watching()).size === 4, 60_000);
      expect([...(await watching())].sort()).toEqual(['endpointslices', 'nodes', 'servicecidrs', 'services']);
    } finally {
      // The later tests need it back, whatever failed above (whose error is the one to report).
      if (!local.process.running) await cp.startApiServer('node-local').catch((err: Error) => console.error(`restarting kube-apiserver node-local: ${err.message}`));
    }
  }, 120_000);

  it("relists after etcd's compaction makes a re-watch fail with 410 Gone, and loses nothing", async () => {
    const expiredBefore = (daemon?.output.match(/watch expired \(410\)/g) ?? []).length;
    // Deleted before the compaction: reaches the daemon by its watch or, after a 410, by the relist.
    await core.deleteNamespacedService({ namespace: NS, name: 'late' });
    await discovery.deleteNamespacedEndpointSlice({ namespace: NS, name: 'late-1' });
    const revision = await cp.compactEtcd();
    // Each watch ends after at most 90 % of the idle timeout and resumes from the last
    // resourceVersion it saw. The Node's is older than the deletes, so older than the compacted
    // revision: etcd refuses it, and the API server says 410 Gone.
    await waitFor(
      `a watch to expire (etcd compacted at revision ${revision})`,
      async () => (daemon?.output.match(/watch expired \(410\)/g) ?? []).length > expiredBefore,
      2 * WATCH_IDLE_TIMEOUT_S * 1000,
    );
    await rulesMatchApi(10_000);
    await setWebEndpoints(['pod2']);
    await webIs(['pod2'], 10_000);
  }, 90_000);

  it("restarts a watch that stays open but goes silent (kube-apiserver frozen), then catches up", async () => {
    const restartsBefore = await metric('kubeproxy_informer_restarts_total');
    local.process.signal('SIGSTOP');
    try {
      await setWebEndpoints(['pod1', 'pod3']);
      await waitFor(
        'the watchdog to restart the silent watches',
        async () => new RegExp(`no event for ${WATCH_IDLE_TIMEOUT_S * 1000} ms`).test(daemon?.output ?? ''),
        (WATCH_IDLE_TIMEOUT_S + 15) * 1000,
      );
      expect(await web(['pod2']), 'rules stay while the API is silent').toEqual(new Set(['pod2']));
    } finally {
      local.process.signal('SIGCONT');
    }
    await webIs(['pod1', 'pod3'], 60_000);
    expect(await metric('kubeproxy_informer_restarts_total')).toBeGreaterThan(restartsBefore);
    await rulesMatchApi(10_000);
  }, 120_000);

  it('runs without the permission to list ServiceCIDRs (403): one warning, everything else works', async () => {
    expect(await daemon?.stop()).toBe(0);
    const limited = await startDaemon(limitedKubeconfig);
    await setWebEndpoints(['pod2', 'pod3']);
    await webIs(['pod2', 'pod3'], 60_000);
    await rulesMatchApi(10_000);
    const warnings = limited.output.split('\n').filter((l) => l.includes('not allowed to list this resource'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('servicecidrs');
    const refused = cp.auditEvents(local).filter((e) => e.user.username === limitedUser && e.responseStatus?.code === 403);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((e) => e.objectRef?.resource === 'servicecidrs')).toBe(true);
  }, 120_000);

  it('resyncs every configSyncPeriod with lists not older than what it saw, which the API server accepts', async () => {
    expect(await daemon?.stop()).toBe(0);
    const auditBefore = cp.auditEvents(local).length;
    const d = await startDaemon(kubeconfig, ['--config-sync-period=2s']);
    await setWebEndpoints(['pod1', 'pod3']);
    await webIs(['pod1', 'pod3'], 60_000);
    await waitFor('two resyncs', async () => {
      const resyncs = cp.auditEvents(local).slice(auditBefore).filter((e) => e.user.username === proxyUser && e.verb === 'list' && e.requestURI.includes('resourceVersionMatch=NotOlderThan'));
      return new Set(resyncs.map((e) => e.objectRef?.resource)).size >= 2 && resyncs.length >= 4;
    }, 20_000);
    const resyncs = cp.auditEvents(local).slice(auditBefore).filter((e) => e.user.username === proxyUser && e.requestURI.includes('resourceVersionMatch=NotOlderThan'));
    expect(resyncs.filter((e) => e.responseStatus?.code !== 200).map((e) => `${e.responseStatus?.code} ${e.requestURI}`)).toEqual([]);
    expect(resyncs.some((e) => /[?&]limit=/.test(e.requestURI))).toBe(false);
    expect(d.output).not.toContain('restarting informer');
    await rulesMatchApi(10_000);
    // Leave the endpoints as the next test expects them.
    await setWebEndpoints(['pod2', 'pod3']);
    await webIs(['pod2', 'pod3'], 60_000);
  }, 120_000);

  it(`lists ${BULK} Services in pages (limit/continue) and programs every one`, async () => {
    expect(await daemon?.stop()).toBe(0);
    const created = Date.now();
    const bulkNs = 'bulk';
    await core.createNamespace({ body: { metadata: { name: bulkNs } } });
    const names = Array.from({ length: BULK }, (_, i) => i);
    const ip = (i: number) => `10.96.${100 + Math.floor(i / 250)}.${1 + (i % 250)}`;
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < names.length) {
          const i = next++;
          await core.createNamespacedService({
            namespace: bulkNs,
            body: forCreate(service(bulkNs, `svc-${i}`, { clusterIP: ip(i), ports: [{ name: 'http', port: 80, targetPort: TARGET_PORT }] })),
          });
        }
      }),
    );
    console.log(`real kube-apiserver e2e: created ${BULK} Services in ${Date.now() - created} ms`);

    const auditBefore = cp.auditEvents(local).length;
    const started = Date.now();
    await startDaemon(kubeconfig);
    await rulesMatchApi(120_000);
    console.log(`real kube-apiserver e2e: ${BULK} Services listed and programmed ${Date.now() - started} ms after the daemon started`);
    const rejects = (await sb.execOk('node', ['iptables-save', '-t', 'filter'], { timeoutMs: 30_000 })).split('\n').filter((l) => l.includes(`${bulkNs}/svc-`) && l.includes('has no endpoints'));
    expect(rejects).toHaveLength(BULK);

    const lists = cp
      .auditEvents(local)
      .slice(auditBefore)
      .filter((e) => e.user.username === proxyUser && e.verb === 'list' && e.objectRef?.resource === 'services' && e.stage === 'ResponseComplete');
    const pages = lists.map((e) => new URL(e.requestURI, 'https://x').searchParams);
    expect(pages.every((p) => p.get('limit') === '500')).toBe(true);
    expect(pages.filter((p) => p.has('continue')).length).toBeGreaterThanOrEqual(Math.ceil(BULK / 500) - 1);
    await webIs(['pod2', 'pod3'], 10_000);
  }, 600_000);
});
