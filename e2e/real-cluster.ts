// The real Kubernetes control plane for e2e suites: etcd and kube-apiserver as built by
// scripts/build-kubernetes.sh (versions pinned in e2e/kubernetes), run inside a network namespace
// the suite created, on that namespace's loopback. The suite's own process lives in the host's
// namespace and cannot reach that loopback; it talks to the programs through relays over
// filesystem Unix sockets (not bound to a network namespace): a listener on the host's loopback
// forwards each connection to a socket in the temp dir, where a small process inside the
// namespace connects it on to 127.0.0.1:<port>. Nothing is configured in the host's namespace.

import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync, writeFileSync, type WriteStream } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { request as httpsRequest } from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { runProcess } from '@kube-proxy-ts/netfilter';
import { stringify } from 'yaml';

const KUBERNETES_MODULE = fileURLToPath(new URL('./kubernetes/go.mod', import.meta.url));
export const BUILD_SCRIPT = fileURLToPath(new URL('../scripts/build-kubernetes.sh', import.meta.url));
export const KUBERNETES_BINARIES = ['kube-apiserver', 'kube-proxy', 'etcd'] as const;

/** The k8s.io/kubernetes version e2e/kubernetes/go.mod pins, e.g. "v1.37.2". */
export function kubernetesVersion(): string {
  const version = /^\s*k8s\.io\/kubernetes (v\S+)/m.exec(readFileSync(KUBERNETES_MODULE, 'utf8'))?.[1];
  if (!version) throw new Error(`${KUBERNETES_MODULE} does not require k8s.io/kubernetes`);
  return version;
}

/** Where scripts/build-kubernetes.sh puts the binaries of the pinned release. */
export function kubernetesBinDir(): string {
  const cache = process.env.KPTS_CACHE || join(homedir(), '.cache', 'kube-proxy-ts');
  return join(cache, `kubernetes-${kubernetesVersion()}`);
}

/** Why the real programs cannot run here (binaries not built), or undefined when they can. */
export function kubernetesBinariesMissing(): string | undefined {
  const dir = kubernetesBinDir();
  const missing = KUBERNETES_BINARIES.filter((b) => !existsSync(join(dir, b)));
  if (missing.length === 0) return undefined;
  return `${missing.join(', ')} not in ${dir} (build them with ${BUILD_SCRIPT})`;
}

// Programs still running when the test process exits (a crash, a runner killing its worker) are
// killed with it, so no etcd or kube-apiserver outlives the suite.
const live = new Set<NetnsProcess>();
process.once('exit', () => {
  for (const p of live) p.signal('SIGKILL');
});

/** A long-running program started inside a network namespace, its output kept in a log file. */
export class NetnsProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private tail = '';
  private readonly log: WriteStream;

  constructor(
    readonly name: string,
    netns: string,
    argv: readonly string[],
    readonly logFile: string,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    // `ip netns exec` execs the program: the child's pid is the program's, so signals reach it.
    this.child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.log = createWriteStream(logFile, { flags: 'a' });
    const keep = (b: Buffer) => {
      this.log.write(b);
      this.tail = (this.tail + b.toString()).slice(-200_000);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    live.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        live.delete(this);
        this.log.end();
        resolve(code);
      });
      this.child.once('error', (err) => {
        keep(Buffer.from(`spawn failed: ${err.message}\n`));
        resolve(null);
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The output so far (the last 200 kB). */
  get output(): string {
    return this.tail;
  }

  lastLines(n: number): string {
    return this.tail.split('\n').slice(-n).join('\n');
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM, SIGKILL after `graceMs`; resolves with the exit code once gone. */
  async stop(graceMs = 5000): Promise<number | null> {
    if (this.running) {
      this.child.kill('SIGCONT'); // a stopped process would not act on SIGTERM
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }

  async kill(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }
}

// Runs as `node -e SCRIPT <socket path> <port>` inside the namespace; prints "ready" once listening.
const RELAY_SCRIPT = `
const net = require('node:net');
const [path, port] = process.argv.slice(1);
net.createServer((c) => {
  const t = net.connect(Number(port), '127.0.0.1');
  const end = () => { c.destroy(); t.destroy(); };
  c.pipe(t); t.pipe(c);
  for (const s of [c, t]) { s.on('error', end); s.on('close', end); }
}).listen(path, () => process.stdout.write('ready\\n'));
`;

/** A port on the host's loopback that reaches 127.0.0.1:<port> inside a namespace. */
export interface Relay {
  readonly port: number;
  close(): Promise<void>;
}

export async function startRelay(netns: string, port: number, socketPath: string, logFile: string): Promise<Relay> {
  const inner = new NetnsProcess(`relay-${port}`, netns, [process.execPath, '-e', RELAY_SCRIPT, socketPath, String(port)], logFile);
  await waitUntil(`the relay to ${port} in ${netns}`, async () => {
    if (!inner.running) throw new Error(`relay exited: ${inner.output}`);
    return inner.output.includes('ready');
  }, 10_000);
  const sockets = new Set<Socket>();
  const outer: Server = createServer((c) => {
    const t = connect(socketPath);
    const end = () => {
      c.destroy();
      t.destroy();
    };
    c.pipe(t);
    t.pipe(c);
    for (const s of [c, t]) {
      sockets.add(s);
      s.on('error', end);
      s.on('close', () => (end(), sockets.delete(s)));
    }
  });
  await new Promise<void>((resolve, reject) => outer.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = outer.address();
  if (!address || typeof address === 'string') throw new Error('relay: no port');
  return {
    port: address.port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => outer.close(() => resolve()));
      await inner.kill();
    },
  };
}

// Runs as `node -e SCRIPT <socket path> <port>` inside another namespace: listens on that
// namespace's 127.0.0.1:<port> and connects each client to the socket the first relay serves.
const REVERSE_RELAY_SCRIPT = `
const net = require('node:net');
const [path, port] = process.argv.slice(1);
net.createServer((c) => {
  const t = net.connect(path);
  const end = () => { c.destroy(); t.destroy(); };
  c.pipe(t); t.pipe(c);
  for (const s of [c, t]) { s.on('error', end); s.on('close', end); }
}).listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

/**
 * Makes 127.0.0.1:<port> of namespace `netns` reach the program behind `socketPath` (a socket a
 * relay of startRelay serves), so a client there uses the same URL as one beside the program.
 */
export async function startNamespaceRelay(netns: string, port: number, socketPath: string, logFile: string): Promise<Relay> {
  const inner = new NetnsProcess(`ns-relay-${port}`, netns, [process.execPath, '-e', REVERSE_RELAY_SCRIPT, socketPath, String(port)], logFile);
  await waitUntil(`the relay to ${port} in ${netns}`, async () => {
    if (!inner.running) throw new Error(`relay exited: ${inner.output}`);
    return inner.output.includes('ready');
  }, 10_000);
  return { port, close: () => inner.kill() };
}

/** Polls `check` every 200 ms until it returns true; a throw ends the wait at once. */
export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number, context?: () => string): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      if (await check()) return;
      last = undefined;
    } catch (err) {
      if (err instanceof Error && /exited/.test(err.message)) throw err;
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const why = last instanceof Error ? ` (last error: ${last.message})` : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}${context ? `\n${context()}` : ''}`);
}

async function run(argv: string[], timeoutMs = 30_000): Promise<string> {
  const [cmd, ...args] = argv as [string, ...string[]];
  const r = await runProcess(cmd, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/** One request as kube-apiserver's audit log records it (level Metadata). */
export interface AuditEvent {
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string; groups?: string[] };
  objectRef?: { resource?: string; apiGroup?: string; namespace?: string; name?: string; subresource?: string };
  responseStatus?: { code?: number };
}

export interface ControlPlaneOptions {
  /** The namespace etcd and kube-apiserver run in (created by the suite). */
  netns: string;
  /** A temp dir of the suite: data, keys, certificates, logs. */
  dir: string;
  /** --advertise-address: an address of the namespace. */
  advertiseAddress: string;
  /** --service-cluster-ip-range. */
  serviceCIDR: string;
  /** Users whose requests the audit log records, e.g. the proxy's service account. */
  auditedUsers: string[];
}

export interface ApiServerOptions {
  /** --watch-cache (default true). Off, watches are served by etcd itself, compaction and all. */
  watchCache?: boolean;
}

/** A kube-apiserver instance; the same name restarts on the same port with the same options. */
export interface ApiServer {
  readonly name: string;
  /** Its port on the namespace's loopback. */
  readonly port: number;
  /** https://127.0.0.1:<port>, as a client inside the namespace sees it. */
  readonly url: string;
  /** Its port through a relay on the host's loopback, for the suite's own clients. */
  readonly hostPort: number;
  readonly auditLog: string;
  process: NetnsProcess;
  readonly options: ApiServerOptions;
}

const ADMIN_TOKEN_USER = 'e2e-admin';

/** etcd plus any number of kube-apiservers sharing it, all inside one namespace. */
export class ControlPlane {
  readonly binDir = kubernetesBinDir();
  readonly apiServers = new Map<string, ApiServer>();
  private readonly usedPorts = new Set<number>();
  private readonly relays: Relay[] = [];
  private etcd: NetnsProcess | undefined;
  private etcdPort = 0;
  private etcdRelay: Relay | undefined;
  private readonly adminToken = `admin-${Math.random().toString(36).slice(2)}`;
  private certificate = '';
  private logs = 0;

  private constructor(readonly options: ControlPlaneOptions) {}

  /** Starts etcd; API servers are started with startApiServer(). */
  static async start(options: ControlPlaneOptions): Promise<ControlPlane> {
    const cp = new ControlPlane(options);
    try {
      await cp.writeSecrets();
      await cp.startEtcd();
    } catch (err) {
      await cp.stop();
      throw err;
    }
    return cp;
  }

  private path(name: string): string {
    return join(this.options.dir, name);
  }

  /** A port of the namespace's loopback: the namespace is new, so any port not handed out yet is free. */
  private freePort(): number {
    for (;;) {
      const port = 20_000 + Math.floor(Math.random() * 9000);
      if (!this.usedPorts.has(port)) {
        this.usedPorts.add(port);
        return port;
      }
    }
  }

  private logFile(name: string): string {
    return this.path(`${String(++this.logs).padStart(2, '0')}-${name}.log`);
  }

  /**
   * A self-signed serving certificate for 127.0.0.1, the service-account signing key pair, the
   * token file with the admin user (system:masters) and the audit policy.
   */
  private async writeSecrets(): Promise<void> {
    await run([
      'openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=kube-apiserver', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout', this.path('serving.key'), '-out', this.path('serving.crt'),
    ]);
    this.certificate = readFileSync(this.path('serving.crt'), 'utf8');
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(this.path('sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(this.path('sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(this.path('tokens.csv'), `${this.adminToken},${ADMIN_TOKEN_USER},${ADMIN_TOKEN_USER},"system:masters"\n`, { mode: 0o600 });
    const policy = {
      apiVersion: 'audit.k8s.io/v1',
      kind: 'Policy',
      omitStages: ['RequestReceived'],
      rules: [{ level: 'Metadata', users: this.options.auditedUsers }, { level: 'None' }],
    };
    writeFileSync(this.path('audit-policy.yaml'), stringify(policy));
  }

  private async startEtcd(): Promise<void> {
    this.etcdPort = this.freePort();
    const peer = `http://127.0.0.1:${this.freePort()}`;
    const client = `http://127.0.0.1:${this.etcdPort}`;
    this.etcd = new NetnsProcess('etcd', this.options.netns, [
      join(this.binDir, 'etcd'), '--name=e2e', `--data-dir=${this.path('etcd')}`,
      `--listen-client-urls=${client}`, `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=e2e=${peer}`,
      // Throw-away data: no fsync, so 10 000 writes do not wait on the disk.
      '--unsafe-no-fsync', '--log-level=warn',
    ], this.logFile('etcd'));
    this.etcdRelay = await startRelay(this.options.netns, this.etcdPort, this.path('etcd.sock'), this.logFile('etcd-relay'));
    this.relays.push(this.etcdRelay);
    await waitUntil('etcd to be healthy', async () => {
      if (!this.etcd?.running) throw new Error(`etcd exited:\n${this.etcd?.lastLines(20)}`);
      const r = await fetch(`http://127.0.0.1:${this.etcdRelay?.port}/health`);
      return r.ok && ((await r.json()) as { health?: string }).health === 'true';
    }, 30_000);
  }

  /** Starts (or, for a known name, restarts) a kube-apiserver on etcd; resolves once /readyz is 200. */
  async startApiServer(name: string, options: ApiServerOptions = {}): Promise<ApiServer> {
    let server = this.apiServers.get(name);
    if (server?.process.running) throw new Error(`kube-apiserver ${name} is running`);
    const port = server?.port ?? this.freePort();
    const opts = server?.options ?? options;
    const auditLog = server?.auditLog ?? this.path(`audit-${name}.log`);
    const args = [
      join(this.binDir, 'kube-apiserver'),
      `--etcd-servers=http://127.0.0.1:${this.etcdPort}`,
      '--bind-address=127.0.0.1', `--secure-port=${port}`, `--advertise-address=${this.options.advertiseAddress}`,
      `--tls-cert-file=${this.path('serving.crt')}`, `--tls-private-key-file=${this.path('serving.key')}`,
      `--token-auth-file=${this.path('tokens.csv')}`,
      '--authorization-mode=Node,RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${this.path('sa.pub')}`, `--service-account-signing-key-file=${this.path('sa.key')}`,
      `--service-cluster-ip-range=${this.options.serviceCIDR}`,
      // No controller manager here: nobody else writes the "kubernetes" Service's endpoints either.
      '--endpoint-reconciler-type=none',
      `--audit-policy-file=${this.path('audit-policy.yaml')}`, `--audit-log-path=${auditLog}`, '--audit-log-mode=blocking',
      `--watch-cache=${opts.watchCache ?? true}`,
      `--cert-dir=${this.path(`certs-${name}`)}`,
    ];
    const proc = new NetnsProcess(`kube-apiserver-${name}`, this.options.netns, args, this.logFile(`kube-apiserver-${name}`));
    if (server) {
      server.process = proc;
    } else {
      const relay = await startRelay(this.options.netns, port, this.path(`apiserver-${name}.sock`), this.logFile(`apiserver-${name}-relay`));
      this.relays.push(relay);
      server = { name, port, url: `https://127.0.0.1:${port}`, hostPort: relay.port, auditLog, process: proc, options: opts };
      this.apiServers.set(name, server);
    }
    const s = server;
    await waitUntil(`kube-apiserver ${name} to be ready`, async () => {
      if (!s.process.running) throw new Error(`kube-apiserver ${name} exited:\n${s.process.lastLines(30)}`);
      return (await this.get(s, '/readyz')).status === 200;
    }, 90_000, () => s.process.lastLines(20));
    return s;
  }

  apiServer(name: string): ApiServer {
    const s = this.apiServers.get(name);
    if (!s) throw new Error(`no kube-apiserver ${name}`);
    return s;
  }

  /** A GET as the admin user through the relay (fetch takes no CA per request; https.request does). */
  async get(server: ApiServer, path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        { host: '127.0.0.1', port: server.hostPort, path, ca: this.certificate, headers: { authorization: `Bearer ${this.adminToken}` }, timeout: 5000 },
        (res) => {
          let body = '';
          res.on('data', (b: Buffer) => (body += b.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  /** A client-node configuration for the admin user (system:masters), through the relay. */
  adminKubeConfig(server: ApiServer): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'e2e', server: `https://127.0.0.1:${server.hostPort}`, caData: Buffer.from(this.certificate).toString('base64') }],
      users: [{ name: ADMIN_TOKEN_USER, token: this.adminToken }],
      contexts: [{ name: 'e2e', cluster: 'e2e', user: ADMIN_TOKEN_USER }],
      currentContext: 'e2e',
    });
    return kc;
  }

  /** Writes a kubeconfig file for a client inside the namespace, authenticating with `token`. */
  writeKubeconfig(file: string, server: ApiServer, user: string, token: string): string {
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'e2e', cluster: { server: server.url, 'certificate-authority-data': Buffer.from(this.certificate).toString('base64') } }],
      users: [{ name: user, user: { token } }],
      contexts: [{ name: 'e2e', context: { cluster: 'e2e', user } }],
      'current-context': 'e2e',
    };
    writeFileSync(file, stringify(config), { mode: 0o600 });
    return file;
  }

  /** What the audit log of `server` holds so far. */
  auditEvents(server: ApiServer): AuditEvent[] {
    if (!existsSync(server.auditLog)) return [];
    return readFileSync(server.auditLog, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as AuditEvent);
  }

  /** Compacts etcd's history up to its current revision (as the API server does every 5 min), returning that revision. */
  async compactEtcd(): Promise<number> {
    const base = `http://127.0.0.1:${this.etcdRelay?.port}`;
    const post = async (path: string, body: unknown) => {
      const r = await fetch(`${base}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      const text = await r.text();
      if (!r.ok) throw new Error(`etcd ${path}: HTTP ${r.status}: ${text}`);
      return JSON.parse(text) as { header?: { revision?: string } };
    };
    // Any key will do: the response header carries the store's current revision.
    const range = await post('/v3/kv/range', { key: Buffer.from('/registry/').toString('base64'), limit: 1 });
    const revision = Number(range.header?.revision);
    if (!Number.isInteger(revision) || revision <= 0) throw new Error(`etcd: no revision in ${JSON.stringify(range)}`);
    await post('/v3/kv/compaction', { revision: String(revision), physical: true });
    return revision;
  }

  /**
   * Makes `server` reachable at its own URL (https://127.0.0.1:<port>) from inside another
   * namespace, e.g. a second node's; the relay stops with the control plane.
   */
  async exposeApiServer(server: ApiServer, netns: string): Promise<void> {
    const relay = await startNamespaceRelay(netns, server.port, this.path(`apiserver-${server.name}.sock`), this.logFile(`apiserver-${server.name}-in-${netns}`));
    this.relays.push(relay);
  }

  /** Stops every process and relay; safe to call more than once and after a failed start. */
  async stop(): Promise<void> {
    for (const s of this.apiServers.values()) await s.process.stop();
    await this.etcd?.stop();
    for (const r of this.relays.splice(0)) await r.close().catch(() => undefined);
  }
}
