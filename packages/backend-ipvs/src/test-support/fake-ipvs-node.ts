// A pretend node for unit tests: a recording runner whose ipvsadm, ipset, ip, iptables and
// sysctl answer from (and change) an in-memory kernel, so tests can check both the payloads a
// sync sends and the data plane they leave behind.

import { createRecordingRunner, type RecordingRunner } from '@kube-proxy-ts/testing';

interface FakeRealServer {
  address: string;
  port: number;
  weight: number;
  active: number;
  inactive: number;
}

interface FakeService {
  protocol: string;
  address: string;
  port: number;
  scheduler: string;
  flags: string[];
  persistent: number | undefined;
  realServers: Map<string, FakeRealServer>;
}

const hostPort = (address: string, port: number) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

function splitHostPort(text: string): { address: string; port: number } {
  const m = /^\[(.+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) throw new Error(`bad address ${text}`);
  return { address: m[1]!, port: Number(m[2]) };
}

export interface FakeIpvsNode {
  readonly runner: RecordingRunner;
  readonly services: Map<string, FakeService>;
  readonly ipsets: Map<string, { type: string; entries: Set<string> }>;
  readonly links: Map<string, { family: 'inet' | 'inet6'; local: string }[]>;
  readonly tables: Map<string, Map<string, string[]>>;
  readonly sysctls: Map<string, string>;
  ipvsTimeouts: string[] | undefined;
  /** Adds a virtual service as another tool would (`ipvsadm -A`). */
  addForeignService(protocol: 'TCP' | 'UDP', address: string, port: number, realServers?: string[]): void;
  setConnections(serviceKey: string, realServer: string, active: number, inactive: number): void;
  /** Every command line the node ran, as `cmd args...` (stdin not included). */
  commandLines(): string[];
}

export function createFakeIpvsNode(options: { nodeIPs?: string[] } = {}): FakeIpvsNode {
  const runner = createRecordingRunner({ strict: true });
  const services = new Map<string, FakeService>();
  const ipsets = new Map<string, { type: string; entries: Set<string> }>();
  const links = new Map<string, { family: 'inet' | 'inet6'; local: string }[]>([
    ['lo', [{ family: 'inet', local: '127.0.0.1' }, { family: 'inet6', local: '::1' }]],
    ['eth0', (options.nodeIPs ?? ['192.168.50.1']).map((ip) => ({ family: ip.includes(':') ? 'inet6' : 'inet', local: ip }) as const)],
  ]);
  const builtins: Record<string, string[]> = { nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'], filter: ['INPUT', 'FORWARD', 'OUTPUT'], mangle: [] };
  const tables = new Map(Object.entries(builtins).map(([t, chains]) => [t, new Map(chains.map((c) => [c, [] as string[]]))]));
  const sysctls = new Map<string, string>();

  const node: FakeIpvsNode = {
    runner,
    services,
    ipsets,
    links,
    tables,
    sysctls,
    ipvsTimeouts: undefined,
    addForeignService(protocol, address, port, realServers = []) {
      const rs = new Map(realServers.map((r) => [r, { ...splitHostPort(r), weight: 1, active: 0, inactive: 0 }]));
      services.set(`${protocol}/${hostPort(address, port)}`, { protocol, address, port, scheduler: 'rr', flags: [], persistent: undefined, realServers: rs });
    },
    setConnections(serviceKey, realServer, active, inactive) {
      const rs = services.get(serviceKey)?.realServers.get(realServer);
      if (!rs) throw new Error(`no real server ${serviceKey} ${realServer}`);
      rs.active = active;
      rs.inactive = inactive;
    },
    commandLines() {
      return runner.calls.map((c) => [c.command, ...c.args].join(' '));
    },
  };

  // ipvsadm
  const renderIpvs = () => {
    const lines = ['IP Virtual Server version 1.2.1 (size=4096)', 'Prot LocalAddress:Port Scheduler Flags', '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn'];
    for (const s of services.values()) {
      let head = `${s.protocol}  ${hostPort(s.address, s.port)} ${s.scheduler}`;
      if (s.flags.length) head += ` (${s.flags.join(',')})`;
      if (s.persistent !== undefined) head += ` persistent ${s.persistent}`;
      lines.push(head);
      for (const r of s.realServers.values()) lines.push(`  -> ${hostPort(r.address, r.port).padEnd(28)} Masq    ${r.weight}      ${r.active}          ${r.inactive}`);
    }
    return `${lines.join('\n')}\n`;
  };
  const applyIpvsLine = (line: string): string | undefined => {
    const f = line.trim().split(/\s+/);
    const op = f[0];
    let proto = '';
    let vs = '';
    let rs = '';
    let scheduler = 'wlc';
    let flags: string[] = [];
    let persistent: number | undefined;
    let weight = 1;
    for (let i = 1; i < f.length; i++) {
      const a = f[i]!;
      if (a === '-t' || a === '-u' || a === '--sctp-service') {
        proto = a === '-t' ? 'TCP' : a === '-u' ? 'UDP' : 'SCTP';
        vs = f[++i]!;
      } else if (a === '-s') scheduler = f[++i]!;
      else if (a === '-b') flags = f[++i]!.split(',').sort();
      else if (a === '-p') persistent = Number(f[++i]);
      else if (a === '-r') rs = f[++i]!;
      else if (a === '-w') weight = Number(f[++i]);
    }
    const key = `${proto}/${vs}`;
    const svc = services.get(key);
    switch (op) {
      case '-A':
        if (svc) return 'Service already exists';
        services.set(key, { protocol: proto, ...splitHostPort(vs), scheduler, flags, persistent, realServers: new Map() });
        return undefined;
      case '-E':
        if (!svc) return 'No such service';
        Object.assign(svc, { scheduler, flags, persistent });
        return undefined;
      case '-D':
        if (!svc) return 'No such service';
        services.delete(key);
        return undefined;
      case '-a':
        if (!svc) return 'No such service';
        if (svc.realServers.has(rs)) return 'Destination already exists';
        svc.realServers.set(rs, { ...splitHostPort(rs), weight, active: 0, inactive: 0 });
        return undefined;
      case '-e':
        if (!svc?.realServers.has(rs)) return 'No such destination';
        svc.realServers.get(rs)!.weight = weight;
        return undefined;
      case '-d':
        if (!svc?.realServers.delete(rs)) return 'No such destination';
        return undefined;
      default:
        return `unknown command ${line}`;
    }
  };
  runner.on('ipvsadm', (args, stdin) => {
    if (args[0] === '-Ln') return { stdout: renderIpvs() };
    if (args[0] === '--set') return (node.ipvsTimeouts = [...args.slice(1)]), {};
    if (args[0] === '--restore') {
      const errors = (stdin ?? '').split('\n').filter((l) => l.trim() !== '').map(applyIpvsLine).filter((e): e is string => e !== undefined);
      return { stderr: errors.map((e) => `${e}\n`).join('') };
    }
    return { code: 2, stderr: `fake ipvsadm: unsupported ${args.join(' ')}` };
  });

  // ipset
  runner.on('ipset', (args, stdin) => {
    if (args[0] === 'save') {
      const out: string[] = [];
      for (const [name, s] of ipsets) {
        out.push(`create ${name} ${s.type}`);
        for (const e of s.entries) out.push(`add ${name} ${e}`);
      }
      return { stdout: out.length ? `${out.join('\n')}\n` : '' };
    }
    if (args[0] !== 'restore') return { code: 1, stderr: `fake ipset: unsupported ${args.join(' ')}` };
    const lines = (stdin ?? '').split('\n').filter((l) => l.trim() !== '');
    for (const [i, line] of lines.entries()) {
      const f = line.split(/\s+/);
      const set = ipsets.get(f[1]!);
      const fail = (msg: string) => ({ code: 1, stderr: `ipset v7.17: Error in line ${i + 1}: ${msg}\n` });
      if (f[0] === 'create') {
        if (!set) ipsets.set(f[1]!, { type: f[2]!, entries: new Set() });
        else if (!f.includes('-exist')) return fail('Set cannot be created: set with the same name already exists');
      } else if (f[0] === 'add') {
        if (!set) return fail('The set with the given name does not exist');
        set.entries.add(f[2]!);
      } else if (f[0] === 'del') {
        if (!set) return fail('The set with the given name does not exist');
        set.entries.delete(f[2]!);
      } else if (f[0] === 'destroy') {
        if (!ipsets.delete(f[1]!)) return fail('The set with the given name does not exist');
      } else return fail(`unknown command ${f[0]}`);
    }
    return {};
  });

  // ip
  runner.on('ip', (args, stdin) => {
    const a = args.join(' ');
    if (a === '-j address show') {
      return { stdout: JSON.stringify([...links].map(([ifname, addrs]) => ({ ifname, addr_info: addrs.map((x) => ({ ...x, prefixlen: 32 })) }))) };
    }
    if (args[0] === 'link' && args[1] === 'add') {
      if (links.has(args[2]!)) return { code: 2, stderr: 'RTNETLINK answers: File exists\n' };
      links.set(args[2]!, []);
      return {};
    }
    if (args[0] === 'link' && args[1] === 'del') {
      if (!links.delete(args[2]!)) return { code: 1, stderr: `Cannot find device "${args[2]}"\n` };
      return {};
    }
    if (a === '-force -batch -') {
      let code = 0;
      for (const line of (stdin ?? '').split('\n').filter(Boolean)) {
        const [, op, cidr, , dev] = line.split(/\s+/);
        const ip = cidr!.split('/')[0]!;
        const list = links.get(dev!);
        if (!list) {
          code = 1;
          continue;
        }
        const at = list.findIndex((x) => x.local === ip);
        if (op === 'add' && at < 0) list.push({ family: ip.includes(':') ? 'inet6' : 'inet', local: ip });
        else if (op === 'del' && at >= 0) list.splice(at, 1);
        else code = 1;
      }
      return { code };
    }
    return { code: 1, stderr: `fake ip: unsupported ${a}` };
  });

  // iptables (any flavour and family)
  const save = (args: readonly string[]) => {
    const only = args[0] === '-t' ? args[1] : undefined;
    const out: string[] = [];
    for (const [table, chains] of tables) {
      if (only && only !== table) continue;
      out.push(`*${table}`);
      for (const chain of chains.keys()) out.push(`:${chain} ${builtins[table]?.includes(chain) ? 'ACCEPT' : '-'} [0:0]`);
      for (const [chain, rules] of chains) for (const r of rules) out.push(`-A ${chain} ${r}`);
      out.push('COMMIT');
    }
    return { stdout: `${out.join('\n')}\n` };
  };
  const restore = (stdin: string | undefined) => {
    let chains: Map<string, string[]> | undefined;
    const lines = (stdin ?? '').split('\n');
    for (const [i, line] of lines.entries()) {
      const fail = () => ({ code: 2, stderr: `iptables-restore: line ${i + 1} failed\n` });
      if (line === '' || line === 'COMMIT') continue;
      if (line.startsWith('*')) chains = tables.get(line.slice(1));
      else if (!chains) return fail();
      else if (line.startsWith(':')) chains.set(line.slice(1).split(' ')[0]!, []);
      else {
        const [op, chain] = line.split(' ', 2) as [string, string];
        let rest = line.slice(op.length + chain.length + 2);
        const rules = chains.get(chain);
        if (!rules) return fail();
        if (op === '-A') rules.push(rest);
        else if (op === '-I') {
          const m = /^(\d+) /.exec(rest);
          const pos = m ? Number(m[1]) - 1 : 0;
          if (m) rest = rest.slice(m[0].length);
          rules.splice(pos, 0, rest);
        } else if (op === '-D') {
          const at = rules.indexOf(rest);
          if (at < 0) return fail();
          rules.splice(at, 1);
        } else if (op === '-X') {
          if (builtins[[...tables].find(([, c]) => c === chains)![0]]?.includes(chain)) return fail();
          chains.delete(chain);
        } else return fail();
      }
    }
    return {};
  };
  for (const family of ['iptables', 'ip6tables']) {
    for (const flavour of ['nft', 'legacy']) {
      runner.on(`${family}-${flavour}-save`, (args) => (flavour === 'nft' ? save(args) : { stdout: '' }));
      runner.on(`${family}-${flavour}-restore`, (_args, stdin) => restore(stdin));
    }
  }

  // conntrack -D: this node's table is always empty.
  runner.on('conntrack', () => ({ code: 1, stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n' }));

  runner.on('sysctl', (args) => {
    for (const kv of args.slice(1)) {
      const [k, v] = kv.split('=');
      sysctls.set(k!, v!);
    }
    return {};
  });
  return node;
}
