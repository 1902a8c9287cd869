// A throw-away "node" made of network namespaces, for end-to-end tests on a real kernel.
// Everything happens inside namespaces the sandbox created (named kpts-<tag>-<random>-<role>);
// the host's own namespace is never touched. See plan.ts for the addressing plan.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { CommandOptions, CommandResult, CommandRunner } from '@kube-proxy-ts/core';
import { runProcess } from '@kube-proxy-ts/netfilter';
import { PLAN, podIP, podIPv6 } from './plan.js';
import { startEchoServer, UDP_CLIENT_SCRIPT, type EchoServer } from './servers.js';

export const SANDBOX_PREFIX = 'kpts-';

export interface SandboxOptions {
  /** A short tag for the namespace names, e.g. "ipt" -> kpts-ipt-1a2b3c-node. Default "sb". */
  tag?: string;
  /** Number of pod namespaces (1..80). Default 2. */
  pods?: number;
  /** Ports each pod's echo server listens on, TCP (HTTP) and UDP alike. Default [8080]. */
  ports?: number[];
  /** Start the echo servers. Default true. */
  servers?: boolean;
  /** Add IPv6 addresses and routes too (dual-stack). Default false. */
  ipv6?: boolean;
}

/** A namespace: its role ('node', 'client', 'external', 'pod1', ...) or its full name. */
export type SandboxNamespace = string;

export interface SandboxPod {
  /** 'pod1', 'pod2', ...: also what its echo server answers. */
  readonly name: string;
  readonly netns: string;
  readonly ip: string;
  /** Only with option ipv6. */
  readonly ipv6: string | undefined;
}

export interface SandboxHost {
  readonly netns: string;
  readonly ip: string;
  readonly ipv6: string | undefined;
}

export interface ProbeResult {
  readonly ok: boolean;
  /** The reply (for the echo servers: a pod name, or a client address). */
  readonly body: string;
  readonly error: string | undefined;
}

export interface ProbeOptions {
  /** HTTP path; "/clientip" makes the echo server answer with the source address it saw. */
  path?: string;
  /** Default 3000. */
  timeoutMs?: number;
}

export interface Sandbox {
  /** `kpts-<tag>-<random>`: every namespace name of this sandbox starts with it. */
  readonly id: string;
  /** The node: where the proxy's rules go. Interfaces: eth0 (to external), veth-podN, veth-client. */
  readonly node: SandboxHost;
  readonly pods: readonly SandboxPod[];
  /** An in-cluster client: a pod on this node (in podCIDR) running no server. */
  readonly client: SandboxHost;
  /** A client outside the cluster, on the node's eth0 link; routes everything via the node. */
  readonly external: SandboxHost;
  /** The addressing plan (cluster CIDR, pod CIDR, node IP, a service CIDR to pick VIPs from). */
  readonly plan: typeof PLAN;
  readonly ports: readonly number[];
  /** Every namespace this sandbox created. */
  readonly namespaces: readonly string[];
  /** Full namespace name of a role ('node', 'client', 'external', 'pod1', ...). */
  netns(ns: SandboxNamespace): string;
  /** Runs argv inside the namespace (`ip netns exec`). Never through a shell. */
  exec(ns: SandboxNamespace, argv: readonly string[], options?: CommandOptions): Promise<CommandResult>;
  /** Like exec(), but rejects with the command's stderr when it exits non-zero. */
  execOk(ns: SandboxNamespace, argv: readonly string[], options?: CommandOptions): Promise<string>;
  /** A CommandRunner whose commands run inside `ns` (default 'node'): hand it to a backend. */
  runner(ns?: SandboxNamespace): CommandRunner;
  /** HTTP GET from `from` to host:port with curl; never rejects. */
  tryHttp(from: SandboxNamespace, host: string, port: number, options?: ProbeOptions): Promise<ProbeResult>;
  /** HTTP GET; resolves with the body, rejects when the request fails. */
  http(from: SandboxNamespace, host: string, port: number, options?: ProbeOptions): Promise<string>;
  /** One UDP datagram from `from`, waiting for one reply; never rejects. */
  tryUdp(from: SandboxNamespace, host: string, port: number, options?: { message?: string; timeoutMs?: number }): Promise<ProbeResult>;
  /** One UDP datagram; resolves with the reply, rejects when none comes. */
  udp(from: SandboxNamespace, host: string, port: number, options?: { message?: string; timeoutMs?: number }): Promise<string>;
  /** Starts the echo server of a pod again (after stopServer), e.g. to test endpoint changes. */
  startServer(pod: string): Promise<void>;
  /** Kills the echo server of a pod. */
  stopServer(pod: string): Promise<void>;
  /** Process ids of the running echo servers. */
  serverPids(): number[];
  /** Kills the servers and deletes every namespace. Idempotent; never rejects. */
  destroy(): Promise<void>;
}

function onPath(tool: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/**
 * Why a sandbox cannot be created here, or undefined when it can: needs root, iproute2 and curl,
 * plus `tools` (e.g. ['iptables-restore', 'conntrack']) for the suite at hand.
 */
export function sandboxUnsupportedReason(tools: readonly string[] = []): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'network-namespace tests need root';
  const missing = ['ip', 'curl', ...tools].filter((t) => !onPath(t));
  if (missing.length > 0) return `missing tools: ${missing.join(', ')}`;
  return undefined;
}

function netnsInode(path: string): string {
  const s = statSync(path);
  return `${s.dev}:${s.ino}`;
}

/** Throws unless `name` is a named namespace distinct from this process's and PID 1's namespace. */
export function assertNotHostNamespace(name: string): void {
  const target = netnsInode(`/run/netns/${name}`);
  const own = netnsInode('/proc/self/ns/net');
  let init: string | undefined;
  try {
    init = netnsInode('/proc/1/ns/net');
  } catch {
    init = undefined; // not readable: our own namespace is the one that matters
  }
  if (target === own || target === init) {
    throw new Error(`refusing to use network namespace ${name}: it is the host's namespace`);
  }
}

async function ip(args: string[]): Promise<void> {
  const r = await runProcess('ip', args, { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
}

// Namespaces of sandboxes still alive when the process exits: removed synchronously then.
const live = new Set<() => void>();
let exitHookInstalled = false;
function onExit(cleanup: () => void): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    const runAll = () => {
      for (const fn of live) fn();
      live.clear();
    };
    process.once('exit', runAll);
    // A test runner stopping its workers by signal skips 'exit': clean up, then die of the signal.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(signal, () => {
        runAll();
        process.kill(process.pid, signal);
      });
    }
  }
  live.add(cleanup);
  return () => live.delete(cleanup);
}

/**
 * Creates the namespaces, links, addresses and routes of the plan, enables forwarding in the
 * node namespace only, and starts the echo servers. On any failure, everything created so far
 * is removed before the error is rethrown.
 */
export async function createSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const reason = sandboxUnsupportedReason();
  if (reason) throw new Error(`createSandbox: ${reason}`);
  const tag = options.tag ?? 'sb';
  if (!/^[a-z0-9]{1,12}$/.test(tag)) throw new Error(`createSandbox: tag must be 1-12 of [a-z0-9], got ${JSON.stringify(tag)}`);
  const podCount = options.pods ?? 2;
  if (!Number.isInteger(podCount) || podCount < 1 || podCount > 80) throw new Error('createSandbox: pods must be 1..80');
  const ports = options.ports ?? [8080];
  const ipv6 = options.ipv6 ?? false;
  const id = `${SANDBOX_PREFIX}${tag}-${randomBytes(3).toString('hex')}`;

  const roles = new Map<string, string>();
  const created: string[] = [];
  const servers = new Map<string, EchoServer>();
  let destroyed = false;

  const netns = (ns: SandboxNamespace): string => {
    const full = roles.get(ns) ?? ns;
    if (!created.includes(full)) throw new Error(`sandbox ${id}: unknown namespace ${JSON.stringify(ns)}`);
    return full;
  };

  const destroySync = () => {
    for (const s of servers.values()) s.process.kill('SIGKILL');
    for (const ns of created) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  };
  const unregister = onExit(destroySync);

  async function destroy(): Promise<void> {
    if (destroyed) return;
    destroyed = true;
    await Promise.all([...servers.values()].map((s) => s.stop()));
    servers.clear();
    for (const ns of created) {
      const r = await runProcess('ip', ['netns', 'del', ns], { timeoutMs: 15_000 }).catch(() => undefined);
      if (r && r.code !== 0 && !/No such file/.test(r.stderr)) {
        // Retry once: a namespace can be briefly busy while a killed process is reaped.
        await runProcess('ip', ['netns', 'del', ns], { timeoutMs: 15_000 }).catch(() => undefined);
      }
    }
    unregister();
  }

  async function addNamespace(role: string): Promise<string> {
    const name = `${id}-${role}`;
    await ip(['netns', 'add', name]);
    created.push(name);
    roles.set(role, name);
    assertNotHostNamespace(name);
    await ip(['-n', name, 'link', 'set', 'lo', 'up']);
    if (ipv6) {
      // Addresses usable at once: no duplicate address detection in a private namespace.
      await sysctl(name, ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    }
    return name;
  }

  async function sysctl(name: string, settings: string[]): Promise<void> {
    assertNotHostNamespace(name);
    const r = await runProcess('ip', ['netns', 'exec', name, 'sysctl', '-qw', ...settings], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`sysctl in ${name}: ${r.stderr.trim()}`);
  }

  /** A pod-like namespace on a /32 (/128) link to the node, as CNI plugins such as Calico do it. */
  async function attachToNode(nodeNs: string, podNs: string, hostIf: string, addr: string, addr6: string | undefined) {
    await ip(['-n', nodeNs, 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
    await ip(['-n', nodeNs, 'addr', 'add', `${PLAN.podGateway}/32`, 'dev', hostIf]);
    await ip(['-n', nodeNs, 'link', 'set', hostIf, 'up']);
    await ip(['-n', nodeNs, 'route', 'add', `${addr}/32`, 'dev', hostIf, 'scope', 'link']);
    await ip(['-n', podNs, 'addr', 'add', `${addr}/32`, 'dev', 'eth0']);
    await ip(['-n', podNs, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', podNs, 'route', 'add', `${PLAN.podGateway}/32`, 'dev', 'eth0', 'scope', 'link']);
    await ip(['-n', podNs, 'route', 'add', 'default', 'via', PLAN.podGateway, 'dev', 'eth0']);
    if (addr6) {
      const gw6 = PLAN.ipv6.podGateway;
      await ip(['-n', nodeNs, 'addr', 'add', `${gw6}/128`, 'dev', hostIf, 'nodad']);
      await ip(['-n', nodeNs, 'route', 'add', `${addr6}/128`, 'dev', hostIf]);
      await ip(['-n', podNs, 'addr', 'add', `${addr6}/128`, 'dev', 'eth0', 'nodad']);
      await ip(['-n', podNs, 'route', 'add', `${gw6}/128`, 'dev', 'eth0']);
      await ip(['-n', podNs, 'route', 'add', 'default', 'via', gw6, 'dev', 'eth0']);
    }
  }

  const exec = async (ns: SandboxNamespace, argv: readonly string[], opts: CommandOptions = {}) => {
    if (destroyed) throw new Error(`sandbox ${id} was destroyed`);
    const full = netns(ns);
    assertNotHostNamespace(full);
    if (argv.length === 0) throw new Error('sandbox exec: empty argv');
    return runProcess('ip', ['netns', 'exec', full, ...argv], { timeoutMs: 60_000, ...opts });
  };

  const pods: SandboxPod[] = [];
  const hostAt = (role: string, ip4: string, ip6: string): SandboxHost => ({
    netns: roles.get(role)!,
    ip: ip4,
    ipv6: ipv6 ? ip6 : undefined,
  });

  try {
    const nodeNs = await addNamespace('node');
    await sysctl(nodeNs, ['net.ipv4.ip_forward=1', ...(ipv6 ? ['net.ipv6.conf.all.forwarding=1'] : [])]);

    const externalNs = await addNamespace('external');
    await ip(['-n', nodeNs, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', externalNs]);
    await ip(['-n', nodeNs, 'addr', 'add', `${PLAN.nodeIP}/${PLAN.nodeLinkPrefix}`, 'dev', 'eth0']);
    await ip(['-n', externalNs, 'addr', 'add', `${PLAN.externalIP}/${PLAN.nodeLinkPrefix}`, 'dev', 'eth0']);
    if (ipv6) {
      await ip(['-n', nodeNs, 'addr', 'add', `${PLAN.ipv6.nodeIP}/${PLAN.ipv6.nodeLinkPrefix}`, 'dev', 'eth0', 'nodad']);
      await ip(['-n', externalNs, 'addr', 'add', `${PLAN.ipv6.externalIP}/${PLAN.ipv6.nodeLinkPrefix}`, 'dev', 'eth0', 'nodad']);
    }
    await ip(['-n', nodeNs, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', externalNs, 'link', 'set', 'eth0', 'up']);
    // The node needs a default route (as real nodes have) so that its own connections to VIPs
    // get a routing decision before the proxy's rules rewrite them; external routes via the node.
    await ip(['-n', nodeNs, 'route', 'add', 'default', 'via', PLAN.externalIP]);
    await ip(['-n', externalNs, 'route', 'add', 'default', 'via', PLAN.nodeIP]);
    if (ipv6) {
      await ip(['-n', nodeNs, 'route', 'add', 'default', 'via', PLAN.ipv6.externalIP]);
      await ip(['-n', externalNs, 'route', 'add', 'default', 'via', PLAN.ipv6.nodeIP]);
    }

    const clientNs = await addNamespace('client');
    await attachToNode(nodeNs, clientNs, 'veth-client', PLAN.clientIP, ipv6 ? PLAN.ipv6.clientIP : undefined);

    for (let i = 1; i <= podCount; i++) {
      const name = `pod${i}`;
      const podNs = await addNamespace(name);
      await attachToNode(nodeNs, podNs, `veth-${name}`, podIP(i), ipv6 ? podIPv6(i) : undefined);
      pods.push({ name, netns: podNs, ip: podIP(i), ipv6: ipv6 ? podIPv6(i) : undefined });
    }
  } catch (e) {
    await destroy();
    throw e;
  }

  async function startServer(pod: string): Promise<void> {
    const p = pods.find((x) => x.name === pod);
    if (!p) throw new Error(`sandbox ${id}: no pod ${pod}`);
    if (servers.has(pod)) return;
    assertNotHostNamespace(p.netns);
    servers.set(pod, await startEchoServer(p.netns, p.name, ports, { ipv6 }));
  }

  async function stopServer(pod: string): Promise<void> {
    const s = servers.get(pod);
    servers.delete(pod);
    await s?.stop();
  }

  const urlHost = (host: string) => (host.includes(':') ? `[${host}]` : host);

  const sandbox: Sandbox = {
    id,
    node: hostAt('node', PLAN.nodeIP, PLAN.ipv6.nodeIP),
    client: hostAt('client', PLAN.clientIP, PLAN.ipv6.clientIP),
    external: hostAt('external', PLAN.externalIP, PLAN.ipv6.externalIP),
    pods,
    plan: PLAN,
    ports,
    namespaces: created,
    netns,
    exec,
    async execOk(ns, argv, opts) {
      const r = await exec(ns, argv, opts);
      if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${netns(ns)}: exit ${r.code}: ${r.stderr.trim()}`);
      return r.stdout;
    },
    runner(ns = 'node') {
      const full = netns(ns);
      return { run: (command, args, opts) => exec(full, [command, ...args], opts) };
    },
    async tryHttp(from, host, port, opts = {}) {
      const timeoutMs = opts.timeoutMs ?? 3000;
      const url = `http://${urlHost(host)}:${port}${opts.path ?? '/'}`;
      const r = await exec(from, ['curl', '-sS', '--max-time', String(timeoutMs / 1000), url], { timeoutMs: timeoutMs + 2000 });
      return { ok: r.code === 0, body: r.stdout, error: r.code === 0 ? undefined : r.stderr.trim() || `curl exit ${r.code}` };
    },
    async http(from, host, port, opts) {
      const r = await sandbox.tryHttp(from, host, port, opts);
      if (!r.ok) throw new Error(`HTTP ${from} -> ${host}:${port} failed: ${r.error}`);
      return r.body;
    },
    async tryUdp(from, host, port, opts = {}) {
      const timeoutMs = opts.timeoutMs ?? 2000;
      const r = await exec(
        from,
        [process.execPath, '-e', UDP_CLIENT_SCRIPT, host, String(port), opts.message ?? 'hello', String(timeoutMs)],
        { timeoutMs: timeoutMs + 5000 },
      );
      return { ok: r.code === 0, body: r.stdout, error: r.code === 0 ? undefined : r.stderr.trim() || `exit ${r.code}` };
    },
    async udp(from, host, port, opts) {
      const r = await sandbox.tryUdp(from, host, port, opts);
      if (!r.ok) throw new Error(`UDP ${from} -> ${host}:${port} failed: ${r.error}`);
      return r.body;
    },
    startServer,
    stopServer,
    serverPids: () => [...servers.values()].flatMap((s) => (s.process.pid === undefined ? [] : [s.process.pid])),
    destroy,
  };

  if (options.servers ?? true) {
    try {
      await Promise.all(pods.map((p) => startServer(p.name)));
    } catch (e) {
      await destroy();
      throw e;
    }
  }
  return sandbox;
}

/** Namespaces whose name starts with `prefix` (default: every sandbox's), e.g. to check teardown. */
export async function listSandboxNamespaces(prefix = SANDBOX_PREFIX): Promise<string[]> {
  const r = await runProcess('ip', ['netns', 'list'], { timeoutMs: 15_000 });
  return r.stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(prefix));
}

/** Deletes the namespaces an interrupted run left of sandboxes tagged `tag`; call it before createSandbox. */
export async function removeLeftoverSandboxes(tag: string): Promise<void> {
  for (const ns of await listSandboxNamespaces(`${SANDBOX_PREFIX}${tag}-`)) {
    assertNotHostNamespace(ns);
    await runProcess('ip', ['netns', 'del', ns], { timeoutMs: 15_000 });
  }
}
