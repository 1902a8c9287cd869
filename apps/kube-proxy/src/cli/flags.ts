// Upstream kube-proxy's command-line flags (cmd/kube-proxy/app/options.go, logsapi), parsed the way
// pflag does: `--flag=value`, `--flag value`, bare booleans, `-v 2` / `-v=2` / `-v2`, repeated list
// and map flags accumulate, `_` and `-` are interchangeable in names.

import type { ProxyConfig } from '@kube-proxy-ts/core';
import { parseDuration } from '../config/duration.js';

export type FlagKind = 'string' | 'bool' | 'int' | 'float' | 'duration' | 'stringSlice' | 'mapStringBool';
export type FlagValue = string | boolean | number | string[] | Record<string, boolean>;

export interface FlagSpec {
  readonly name: string;
  readonly short?: string;
  readonly kind: FlagKind;
  readonly help: string;
  /** Accepted with this warning. */
  readonly deprecated?: string;
  /** Sets the configuration field the flag stands for (used without --config). */
  readonly apply?: (c: ProxyConfig, v: never) => void;
  /** Still honoured when --config is given (upstream: logging, --hostname-override, --master, ...). */
  readonly withConfig?: boolean;
}

const set = <T>(fn: (c: ProxyConfig, v: T) => void) => fn as (c: ProxyConfig, v: never) => void;

export const FLAGS: readonly FlagSpec[] = [
  // Not configuration: what the process does.
  { name: 'config', kind: 'string', help: 'The path to the configuration file.', withConfig: true },
  { name: 'write-config-to', kind: 'string', help: 'If set, write the default configuration values to this file and exit.', withConfig: true },
  { name: 'cleanup', kind: 'bool', help: 'If true cleanup iptables, nftables and ipvs rules and exit.', withConfig: true },
  { name: 'init-only', kind: 'bool', help: 'If true, perform any initialization steps that must be done with full root privileges, and then exit.', withConfig: true },
  { name: 'version', kind: 'string', help: 'Print version information and quit (--version or --version=raw).', withConfig: true },
  { name: 'help', short: 'h', kind: 'bool', help: 'help for kube-proxy', withConfig: true },
  { name: 'master', kind: 'string', help: 'The address of the Kubernetes API server (overrides any value in kubeconfig)', withConfig: true },
  { name: 'manifests', kind: 'string', help: 'Read Services, EndpointSlices and the Node from this YAML/JSON file or directory instead of the Kubernetes API (watched for changes).', withConfig: true },
  {
    name: 'hostname-override', kind: 'string', withConfig: true,
    help: 'If non-empty, will be used as the name of the Node that kube-proxy is running on. If unset, the node name is assumed to be the same as the node\'s hostname.',
  },

  // Logging: honoured with or without --config.
  { name: 'v', short: 'v', kind: 'int', help: 'number for the log level verbosity', withConfig: true, apply: set<number>((c, v) => (c.logging.verbosity = v)) },
  { name: 'logging-format', kind: 'string', help: 'Sets the log format. Permitted formats: "json", "text".', withConfig: true, apply: set<string>((c, v) => (c.logging.format = v as 'json')) },
  { name: 'log-format', kind: 'string', help: 'Same as --logging-format.', withConfig: true, apply: set<string>((c, v) => (c.logging.format = v as 'json')) },
  { name: 'log-level', kind: 'string', help: 'Log level (trace, debug, info, warn, error); overrides -v.', withConfig: true },
  { name: 'vmodule', kind: 'string', help: 'comma-separated list of pattern=N settings for file-filtered logging (accepted, not supported)', withConfig: true },
  { name: 'log-flush-frequency', kind: 'duration', help: 'Maximum number of seconds between log flushes (accepted; logs are not buffered)', withConfig: true },

  // Configuration flags: ignored when --config is given, as upstream.
  { name: 'feature-gates', kind: 'mapStringBool', help: 'A set of key=value pairs that describe feature gates for alpha/experimental features.', apply: set<Record<string, boolean>>((c, v) => (c.featureGates = { ...c.featureGates, ...v })) },
  { name: 'kubeconfig', kind: 'string', help: 'Path to kubeconfig file with authorization information (the master location can be overridden by the master flag).', apply: set<string>((c, v) => (c.clientConnection.kubeconfig = v)) },
  { name: 'kube-api-content-type', kind: 'string', help: 'Content type of requests sent to apiserver.', apply: set<string>((c, v) => (c.clientConnection.contentType = v)) },
  { name: 'kube-api-burst', kind: 'int', help: 'Burst to use while talking with kubernetes apiserver', apply: set<number>((c, v) => (c.clientConnection.burst = v)) },
  { name: 'kube-api-qps', kind: 'float', help: 'QPS to use while talking with kubernetes apiserver', apply: set<number>((c, v) => (c.clientConnection.qps = v)) },
  { name: 'bind-address', kind: 'string', help: "Overrides kube-proxy's idea of what its node's primary IP is.", apply: set<string>((c, v) => (c.bindAddress = v)) },
  { name: 'healthz-bind-address', kind: 'string', help: 'The IP address and port for the health check server to serve on, defaulting to "0.0.0.0:10256".', apply: set<string>((c, v) => (c.healthzBindAddress = v)) },
  { name: 'metrics-bind-address', kind: 'string', help: 'The IP address and port for the metrics server to serve on, defaulting to "127.0.0.1:10249". Set empty to disable.', apply: set<string>((c, v) => (c.metricsBindAddress = v)) },
  { name: 'bind-address-hard-fail', kind: 'bool', help: 'If true kube-proxy will treat failure to bind to a port as fatal and exit', apply: set<boolean>((c, v) => (c.bindAddressHardFail = v)) },
  { name: 'profiling', kind: 'bool', help: 'If true enables profiling via web interface on /debug/pprof handler (accepted, not supported).', apply: set<boolean>((c, v) => (c.enableProfiling = v)) },
  { name: 'show-hidden-metrics-for-version', kind: 'string', help: 'The previous version for which you want to show hidden metrics (accepted, no hidden metrics exist).' },
  { name: 'allow-metric-labels', kind: 'stringSlice', help: 'The map from metric-label to value allow-list of this label (accepted, not enforced).', withConfig: true },
  { name: 'allow-metric-labels-manifest', kind: 'string', help: 'The path to the manifest file that contains the allow-list mapping (accepted, not enforced).', withConfig: true },
  { name: 'disabled-metrics', kind: 'stringSlice', help: 'This flag provides an escape hatch for misbehaving metrics (accepted, not enforced).', withConfig: true },
  { name: 'log-json-split-stream', kind: 'bool', help: '[Alpha] In JSON format, write error messages to stderr and info messages to stdout (accepted; everything goes to stderr).', withConfig: true },
  { name: 'log-json-info-buffer-size', kind: 'string', help: '[Alpha] In JSON format with split output streams, the info messages can be buffered (accepted, not buffered).', withConfig: true },
  { name: 'log-text-split-stream', kind: 'bool', help: '[Alpha] In text format, write error messages to stderr and info messages to stdout (accepted; everything goes to stderr).', withConfig: true },
  { name: 'log-text-info-buffer-size', kind: 'string', help: '[Alpha] In text format with split output streams, the info messages can be buffered (accepted, not buffered).', withConfig: true },
  { name: 'proxy-mode', kind: 'string', help: "Which proxy mode to use: 'iptables' (default), 'ipvs', 'nftables', 'userspace', or the name of an installed backend package.", apply: set<string>((c, v) => (c.mode = v || 'iptables')) },
  { name: 'iptables-masquerade-bit', kind: 'int', help: 'If using the iptables or ipvs proxy mode, the bit of the fwmark space to mark packets requiring SNAT with.  Must be within the range [0, 31].', apply: set<number>((c, v) => { c.iptables.masqueradeBit = v; c.nftables.masqueradeBit = v; }) },
  { name: 'masquerade-all', kind: 'bool', help: 'SNAT all traffic sent via Service cluster IPs. This may be required with some CNI plugins.', apply: set<boolean>((c, v) => { c.iptables.masqueradeAll = v; c.nftables.masqueradeAll = v; }) },
  { name: 'iptables-localhost-nodeports', kind: 'bool', help: 'If false, kube-proxy will disable the legacy behavior of allowing NodePort services to be accessed via localhost.', apply: set<boolean>((c, v) => (c.iptables.localhostNodePorts = v)) },
  // The sync-period flags are applied after --proxy-mode is known (see options.ts).
  { name: 'iptables-sync-period', kind: 'duration', help: "An interval (e.g. '5s', '1m', '2h22m') indicating how frequently various re-synchronizing and cleanup operations are performed. Must be greater than 0." },
  { name: 'iptables-min-sync-period', kind: 'duration', help: "The minimum period between iptables rule resyncs (e.g. '5s', '1m', '2h22m'). A value of 0 means every Service or EndpointSlice change will result in an immediate iptables resync." },
  { name: 'ipvs-sync-period', kind: 'duration', help: "An interval (e.g. '5s', '1m', '2h22m') indicating how frequently various re-synchronizing and cleanup operations are performed. Must be greater than 0." },
  { name: 'ipvs-min-sync-period', kind: 'duration', help: "The minimum period between IPVS rule resyncs (e.g. '5s', '1m', '2h22m'). A value of 0 means every Service or EndpointSlice change will result in an immediate IPVS resync." },
  { name: 'ipvs-scheduler', kind: 'string', help: 'The ipvs scheduler type when proxy mode is ipvs', apply: set<string>((c, v) => (c.ipvs.scheduler = v)) },
  { name: 'ipvs-exclude-cidrs', kind: 'stringSlice', help: 'A comma-separated list of CIDRs which the ipvs proxier should not touch when cleaning up IPVS rules.', apply: set<string[]>((c, v) => (c.ipvs.excludeCIDRs = v)) },
  { name: 'ipvs-strict-arp', kind: 'bool', help: 'Enable strict ARP by setting arp_ignore to 1 and arp_announce to 2', apply: set<boolean>((c, v) => (c.ipvs.strictARP = v)) },
  { name: 'ipvs-tcp-timeout', kind: 'duration', help: "The timeout for idle IPVS TCP connections, 0 to leave as-is. (e.g. '5s', '1m', '2h22m').", apply: set<number>((c, v) => (c.ipvs.tcpTimeout = v)) },
  { name: 'ipvs-tcpfin-timeout', kind: 'duration', help: "The timeout for IPVS TCP connections after receiving a FIN packet, 0 to leave as-is. (e.g. '5s', '1m', '2h22m').", apply: set<number>((c, v) => (c.ipvs.tcpFinTimeout = v)) },
  { name: 'ipvs-udp-timeout', kind: 'duration', help: "The timeout for IPVS UDP packets, 0 to leave as-is. (e.g. '5s', '1m', '2h22m').", apply: set<number>((c, v) => (c.ipvs.udpTimeout = v)) },
  { name: 'detect-local-mode', kind: 'string', help: 'Mode to use to detect local traffic: ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix.', apply: set<string>((c, v) => (c.detectLocalMode = (v || 'ClusterCIDR') as 'ClusterCIDR')) },
  { name: 'pod-bridge-interface', kind: 'string', help: 'A bridge interface name. When --detect-local-mode is set to BridgeInterface, kube-proxy will consider traffic to be local if it originates from this bridge.', apply: set<string>((c, v) => (c.detectLocal.bridgeInterface = v)) },
  { name: 'pod-interface-name-prefix', kind: 'string', help: 'An interface name prefix. When --detect-local-mode is set to InterfaceNamePrefix, kube-proxy will consider traffic to be local if it originates from any interface whose name begins with this prefix.', apply: set<string>((c, v) => (c.detectLocal.interfaceNamePrefix = v)) },
  { name: 'cluster-cidr', kind: 'string', help: 'The CIDR range of the pods in the cluster. (For dual-stack clusters, this can be a comma-separated dual-stack pair of CIDR ranges.)', apply: set<string>((c, v) => (c.clusterCIDR = v)) },
  { name: 'nodeport-addresses', kind: 'stringSlice', help: "A list of CIDR ranges that contain valid node IPs, or alternatively, the single string 'primary'. If unset, NodePort connections will be accepted on all local IPs, except in nftables mode, where only the node's primary IPs are used.", apply: set<string[]>((c, v) => (c.nodePortAddresses = v)) },
  { name: 'oom-score-adj', kind: 'int', help: 'The oom-score-adj value for kube-proxy process. Values must be within the range [-1000, 1000].', apply: set<number>((c, v) => (c.oomScoreAdj = v)) },
  { name: 'conntrack-max-per-core', kind: 'int', help: 'Maximum number of NAT connections to track per CPU core (0 to leave the limit as-is and ignore conntrack-min).', apply: set<number>((c, v) => (c.conntrack.maxPerCore = v)) },
  { name: 'conntrack-min', kind: 'int', help: 'Minimum number of conntrack entries to allocate, regardless of conntrack-max-per-core (set conntrack-max-per-core=0 to leave the limit as-is).', apply: set<number>((c, v) => (c.conntrack.min = v)) },
  { name: 'conntrack-tcp-timeout-established', kind: 'duration', help: 'Idle timeout for established TCP connections (0 to leave as-is)', apply: set<number>((c, v) => (c.conntrack.tcpEstablishedTimeout = v)) },
  { name: 'conntrack-tcp-timeout-close-wait', kind: 'duration', help: 'NAT timeout for TCP connections in the CLOSE_WAIT state', apply: set<number>((c, v) => (c.conntrack.tcpCloseWaitTimeout = v)) },
  { name: 'conntrack-tcp-be-liberal', kind: 'bool', help: 'Enable liberal mode for tracking TCP packets by setting nf_conntrack_tcp_be_liberal to 1', apply: set<boolean>((c, v) => (c.conntrack.tcpBeLiberal = v)) },
  { name: 'conntrack-udp-timeout', kind: 'duration', help: 'Idle timeout for UNREPLIED UDP connections (0 to leave as-is)', apply: set<number>((c, v) => (c.conntrack.udpTimeout = v)) },
  { name: 'conntrack-udp-timeout-stream', kind: 'duration', help: 'Idle timeout for ASSURED UDP connections (0 to leave as-is)', apply: set<number>((c, v) => (c.conntrack.udpStreamTimeout = v)) },
  { name: 'config-sync-period', kind: 'duration', help: 'How often configuration from the apiserver is refreshed.  Must be greater than 0.', apply: set<number>((c, v) => (c.configSyncPeriod = v)) },
  // The userspace mode's flags (upstream removed that mode and deprecated these).
  { name: 'proxy-port-range', kind: 'string', help: 'Range of host ports (beginPort-endPort, single port or beginPort+offset, inclusive) that may be consumed in order to proxy service traffic (userspace mode).', apply: set<string>((c, v) => (c.portRange = v)) },
  { name: 'udp-timeout', kind: 'duration', help: 'How long an idle UDP connection will be kept open (e.g. \'250ms\', \'2s\'). Must be greater than 0. Only applicable for proxy-mode=userspace', apply: set<number>((c, v) => (c.udpIdleTimeout = v)) },
  // Deprecated upstream.
  { name: 'healthz-port', kind: 'int', help: 'The port to bind the health check server. Use 0 to disable.', deprecated: 'This flag is deprecated and will be removed in a future release. Please use --healthz-bind-address instead.' },
  { name: 'metrics-port', kind: 'int', help: 'The port to bind the metrics server. Use 0 to disable.', deprecated: 'This flag is deprecated and will be removed in a future release. Please use --metrics-bind-address instead.' },
];

const BY_NAME = new Map(FLAGS.map((f) => [f.name, f]));
const BY_SHORT = new Map(FLAGS.filter((f) => f.short).map((f) => [f.short as string, f]));

export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagError';
  }
}

export interface ParsedFlags {
  /** Final value of every flag given, by canonical name. */
  readonly values: ReadonlyMap<string, FlagValue>;
  readonly warnings: readonly string[];
}

/** Parses argv (without node and script). Throws FlagError with a clear message on any problem. */
export function parseFlags(argv: readonly string[]): ParsedFlags {
  const values = new Map<string, FlagValue>();
  const warnings: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      const rest = argv.slice(i + 1).filter((a) => a !== '');
      if (rest.length > 0) throw new FlagError(`"kube-proxy" does not take any arguments, got ${JSON.stringify(rest)}`);
      break;
    }
    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    let shown: string;
    if (arg.startsWith('--')) {
      const body = arg.slice(2);
      const eq = body.indexOf('=');
      const raw = eq >= 0 ? body.slice(0, eq) : body;
      if (raw === '' || raw.startsWith('-')) throw new FlagError(`bad flag syntax: ${arg}`);
      inline = eq >= 0 ? body.slice(eq + 1) : undefined;
      shown = `--${raw}`;
      spec = BY_NAME.get(raw.replace(/_/g, '-'));
      if (!spec) throw new FlagError(`unknown flag: ${shown} (see kube-proxy --help)`);
    } else if (arg.startsWith('-') && arg.length > 1) {
      const letter = arg[1] as string;
      shown = `-${letter}`;
      spec = BY_SHORT.get(letter);
      if (!spec) throw new FlagError(`unknown shorthand flag: '${letter}' in ${arg} (see kube-proxy --help)`);
      const tail = arg.slice(2);
      inline = tail === '' ? undefined : tail.startsWith('=') ? tail.slice(1) : tail;
    } else {
      if (arg === '') continue;
      throw new FlagError(`"kube-proxy" does not take any arguments, got ${JSON.stringify(arg)}`);
    }

    let text: string;
    if (spec.kind === 'bool' || spec.name === 'version') {
      text = inline ?? (spec.name === 'version' ? 'true' : 'true');
    } else if (inline !== undefined) {
      text = inline;
    } else {
      const next = argv[i + 1];
      if (next === undefined) throw new FlagError(`flag needs an argument: ${shown}`);
      text = next;
      i++;
    }
    const value = convert(spec, text, shown);
    values.set(spec.name, merge(spec, values.get(spec.name), value));
    if (spec.deprecated) warnings.push(`Flag --${spec.name} has been deprecated, ${spec.deprecated}`);
  }
  return { values, warnings };
}

function convert(spec: FlagSpec, text: string, shown: string): FlagValue {
  const bad = (why: string): never => {
    throw new FlagError(`invalid argument ${JSON.stringify(text)} for "${shown}" flag: ${why}`);
  };
  switch (spec.kind) {
    case 'string':
      return text;
    case 'bool': {
      if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(text)) return true;
      if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(text)) return false;
      return bad('strconv.ParseBool: parsing ' + JSON.stringify(text) + ': invalid syntax');
    }
    case 'int': {
      if (!/^[+-]?\d+$/.test(text.trim())) bad('must be an integer');
      const n = Number(text);
      if (n < -2147483648 || n > 2147483647) bad('value out of range');
      return n;
    }
    case 'float': {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n)) bad('must be a number');
      return n;
    }
    case 'duration':
      try {
        return parseDuration(text);
      } catch (e) {
        return bad((e as Error).message);
      }
    case 'stringSlice':
      return text === '' ? [] : text.split(',').map((s) => s.trim());
    case 'mapStringBool': {
      const out: Record<string, boolean> = {};
      for (const pair of text.split(',')) {
        if (pair.trim() === '') continue;
        const eq = pair.indexOf('=');
        if (eq < 0) bad(`missing bool value for ${pair.trim()}`);
        const key = pair.slice(0, eq).trim();
        const val = pair.slice(eq + 1).trim();
        if (!['true', 'false'].includes(val.toLowerCase())) bad(`invalid value of ${key}: ${val}, err: strconv.ParseBool`);
        out[key] = val.toLowerCase() === 'true';
      }
      return out;
    }
  }
}

// Lists and maps accumulate over repeated flags; everything else: the last one wins.
function merge(spec: FlagSpec, prev: FlagValue | undefined, next: FlagValue): FlagValue {
  if (prev === undefined) return next;
  if (spec.kind === 'stringSlice') return [...(prev as string[]), ...(next as string[])];
  if (spec.kind === 'mapStringBool') return { ...(prev as Record<string, boolean>), ...(next as Record<string, boolean>) };
  return next;
}

export function usage(): string {
  const lines = FLAGS.map((f) => {
    const left = `${f.short ? `-${f.short}, ` : '    '}--${f.name}${f.kind === 'bool' ? '' : ` ${f.kind}`}`;
    return `  ${left.padEnd(44)} ${f.help}${f.deprecated ? ` (DEPRECATED: ${f.deprecated})` : ''}`;
  });
  return [
    'The Kubernetes network proxy runs on each node. This reflects services as defined in the',
    'Kubernetes API on each node and programs iptables, nftables, IPVS or a userspace proxy.',
    '',
    'Usage:',
    '  kube-proxy [flags]',
    '',
    'Flags:',
    ...lines,
  ].join('\n');
}
