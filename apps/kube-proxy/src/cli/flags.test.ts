import { describe, expect, it } from 'vitest';
import { FlagError, parseFlags, usage } from './flags.js';
import { resolveOptions } from './options.js';
import { ConfigError } from '../config/field-error.js';

const CARD_CONFIG = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clusterCIDR: 10.244.0.0/16
mode: "iptables"
iptables:
  masqueradeBit: 14
  syncPeriod: 30s
`;

describe('flag parsing', () => {
  it('accepts --flag=value, --flag value, bare booleans, -v forms and _ for -', () => {
    const { values } = parseFlags(['--proxy-mode=ipvs', '--cluster-cidr', '10.0.0.0/8', '--masquerade-all', '-v', '4', '--iptables_masquerade_bit=3']);
    expect(values.get('proxy-mode')).toBe('ipvs');
    expect(values.get('cluster-cidr')).toBe('10.0.0.0/8');
    expect(values.get('masquerade-all')).toBe(true);
    expect(values.get('v')).toBe(4);
    expect(values.get('iptables-masquerade-bit')).toBe(3);
    expect(parseFlags(['-v=2']).values.get('v')).toBe(2);
    expect(parseFlags(['-v5']).values.get('v')).toBe(5);
    expect(parseFlags(['--v=3']).values.get('v')).toBe(3);
    expect(parseFlags(['--cleanup=false']).values.get('cleanup')).toBe(false);
  });

  it('repeated list and map flags accumulate; other flags: the last wins', () => {
    const { values } = parseFlags(['--nodeport-addresses=10.0.0.0/8', '--nodeport-addresses', '192.168.0.0/16,fd00::/8', '--feature-gates=A=true', '--feature-gates', 'B=false', '--proxy-mode=ipvs', '--proxy-mode=nftables']);
    expect(values.get('nodeport-addresses')).toEqual(['10.0.0.0/8', '192.168.0.0/16', 'fd00::/8']);
    expect(values.get('feature-gates')).toEqual({ A: true, B: false });
    expect(values.get('proxy-mode')).toBe('nftables');
  });

  it.each([
    [['--no-such-flag'], 'unknown flag: --no-such-flag (see kube-proxy --help)'],
    [['-x'], "unknown shorthand flag: 'x' in -x (see kube-proxy --help)"],
    [['--config'], 'flag needs an argument: --config'],
    [['--masquerade-all=maybe'], 'invalid argument "maybe" for "--masquerade-all" flag: strconv.ParseBool: parsing "maybe": invalid syntax'],
    [['--oom-score-adj=abc'], 'invalid argument "abc" for "--oom-score-adj" flag: must be an integer'],
    [['--iptables-sync-period=30'], 'invalid argument "30" for "--iptables-sync-period" flag: invalid duration "30" (expected e.g. "30s", "1m0s", "250ms")'],
    [['--feature-gates=A'], 'invalid argument "A" for "--feature-gates" flag: missing bool value for A'],
    [['stray'], '"kube-proxy" does not take any arguments, got "stray"'],
  ])('%j is a clear error', (argv, message) => {
    expect(() => parseFlags(argv)).toThrow(new FlagError(message));
  });

  it('warns about deprecated flags but accepts them', () => {
    const { warnings, values } = parseFlags(['--healthz-port=0']);
    expect(values.get('healthz-port')).toBe(0);
    expect(warnings).toEqual(['Flag --healthz-port has been deprecated, This flag is deprecated and will be removed in a future release. Please use --healthz-bind-address instead.']);
  });

  it('lists every flag in --help', () => {
    const text = usage();
    for (const f of ['--config', '--proxy-mode', '--hostname-override', '--cleanup', '--write-config-to', '--manifests', '--log-format', '--ipvs-scheduler', '--conntrack-max-per-core']) {
      expect(text).toContain(f);
    }
  });
});

describe('options: flags and --config', () => {
  const files: Record<string, string> = { '/cfg.yaml': CARD_CONFIG };
  const readFile = (p: string) => {
    const t = files[p];
    if (t === undefined) throw new Error(`ENOENT: no such file or directory, open '${p}'`);
    return t;
  };

  it('without --config, flags set the configuration over the defaults', () => {
    const o = resolveOptions(['--proxy-mode=nftables', '--iptables-sync-period=10s', '--iptables-min-sync-period=2s', '--masquerade-all', '--cluster-cidr=10.1.0.0/16', '--hostname-override=Node-A'], { readFile });
    expect(o.config.mode).toBe('nftables');
    expect(o.config.syncPeriod).toBe(10_000);
    expect(o.config.minSyncPeriod).toBe(2_000);
    expect(o.config.nftables.masqueradeAll).toBe(true);
    expect(o.config.clusterCIDR).toBe('10.1.0.0/16');
    expect(o.config.hostnameOverride).toBe('node-a');
  });

  it('--ipvs-* periods apply in ipvs mode', () => {
    const o = resolveOptions(['--proxy-mode=ipvs', '--ipvs-sync-period=45s', '--ipvs-min-sync-period=3s', '--iptables-sync-period=5s'], { readFile });
    expect([o.config.syncPeriod, o.config.minSyncPeriod]).toEqual([45_000, 3_000]);
  });

  it('with --config, the file wins; configuration flags are ignored with a warning, --hostname-override and logging still apply', () => {
    const o = resolveOptions(['--config=/cfg.yaml', '--proxy-mode=ipvs', '--hostname-override=$(NODE_NAME)x', '-v=4', '--log-format=text'], { readFile });
    expect(o.config.mode).toBe('iptables');
    expect(o.config.hostnameOverride).toBe('$(node_name)x');
    expect(o.config.logging).toEqual({ format: 'text', verbosity: 4 });
    expect(o.warnings).toContain('flag --proxy-mode is ignored because a config file is specified by --config');
  });

  it('reports unreadable and invalid config files with the field and value', () => {
    expect(() => resolveOptions(['--config=/missing.yaml'], { readFile })).toThrow(ConfigError);
    expect(() => resolveOptions(['--config=/missing.yaml'], { readFile })).toThrow(/--config: Invalid value: "\/missing.yaml": cannot read the file: ENOENT/);
    files['/bad.yaml'] = CARD_CONFIG.replace('masqueradeBit: 14', 'masqueradeBit: 40');
    expect(() => resolveOptions(['--config=/bad.yaml'], { readFile })).toThrow(/iptables.masqueradeBit: Invalid value: 40: must be within the range \[0, 31\]/);
    expect(() => resolveOptions(['--iptables-masquerade-bit=99'], { readFile })).toThrow(/iptables.masqueradeBit: Invalid value: 99/);
  });

  it('validates --log-level and derives server addresses from deprecated port flags', () => {
    expect(() => resolveOptions(['--log-level=loud'], { readFile })).toThrow(/invalid argument "loud" for "--log-level" flag/);
    const o = resolveOptions(['--healthz-port=0', '--metrics-port=9999'], { readFile });
    expect(o.config.healthzBindAddress).toBe('');
    expect(o.config.metricsBindAddress).toBe('127.0.0.1:9999');
  });

  it('--manifests, --version, --cleanup and --write-config-to are read', () => {
    expect(resolveOptions(['--manifests', '/m'], { readFile }).manifests).toBe('/m');
    expect(resolveOptions(['--version'], { readFile }).version).toBe('true');
    expect(resolveOptions(['--version=raw'], { readFile }).version).toBe('raw');
    expect(resolveOptions(['--cleanup'], { readFile }).cleanup).toBe(true);
    expect(resolveOptions(['--write-config-to=/tmp/x'], { readFile }).writeConfigTo).toBe('/tmp/x');
  });
});
