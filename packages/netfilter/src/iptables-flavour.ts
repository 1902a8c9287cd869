// Which iptables the host uses. Both flavours can be installed; rules written with the wrong
// one are invisible to the other and to the operator's tools. Like upstream's iptables-wrapper,
// trust kubelet's hint chains in the mangle table first; then our own canary from an earlier
// run (so a restart does not dump every table, seconds at 10k services); then pick the flavour
// whose tables hold more rules (nft on a tie, as on a fresh host).

import type { CommandRunner, IPFamily, Requirement } from '@kube-proxy-ts/core';

export type IptablesFlavour = 'nft' | 'legacy';

/** The binaries of one flavour and IP family. */
export interface IptablesCommands {
  readonly flavour: IptablesFlavour;
  readonly family: IPFamily;
  readonly iptables: string;
  readonly save: string;
  readonly restore: string;
}

/**
 * What a backend that writes iptables rules needs: the generic commands, whose alternatives the
 * flavour-specific binaries come with (iptables-nft-restore and -legacy- are found on the same
 * packages' PATH).
 */
export function iptablesRequirements(family: IPFamily): Requirement[] {
  const ipt = family === 'IPv6' ? 'ip6tables' : 'iptables';
  return [
    { tool: `${ipt}-restore`, args: ['--version'], why: 'writes the rules' },
    { tool: `${ipt}-save`, args: ['--version'], why: 'reads the rules' },
    { tool: ipt, args: ['--version'], why: 'adds the jump rules' },
  ];
}

export function iptablesCommands(flavour: IptablesFlavour, family: IPFamily): IptablesCommands {
  const base = family === 'IPv6' ? 'ip6tables' : 'iptables';
  return {
    flavour,
    family,
    iptables: `${base}-${flavour}`,
    save: `${base}-${flavour}-save`,
    restore: `${base}-${flavour}-restore`,
  };
}

/** Chains whose presence in mangle marks the flavour the node's agents already use. */
const HINT_CHAINS = ['KUBE-IPTABLES-HINT', 'KUBE-KUBELET-CANARY'];
/** The canary this proxy keeps in mangle: the flavour an earlier run chose. */
const OWN_CANARY = 'KUBE-PROXY-CANARY';

/** stdout of a successful run; empty when it failed or the binary is missing. */
async function saveOutput(runner: CommandRunner, command: string, args: string[]): Promise<string> {
  try {
    const result = await runner.run(command, args, { timeoutMs: 60_000 }); // a full dump takes seconds at 10k services
    return result.code === 0 ? result.stdout : '';
  } catch {
    return ''; // not installed
  }
}

function countRules(dump: string): number {
  let n = 0;
  for (const line of dump.split('\n')) if (line.startsWith('-')) n++;
  return n;
}

function hasChain(mangleDump: string, chains: readonly string[]): boolean {
  return chains.some((chain) => mangleDump.includes(`:${chain} `));
}

export interface FlavourDetection {
  readonly flavour: IptablesFlavour;
  readonly reason: string;
}

/**
 * Detects the host's flavour. `override` ("nft" | "legacy") skips detection.
 */
export async function detectIptablesFlavour(runner: CommandRunner, override?: IptablesFlavour | 'auto'): Promise<FlavourDetection> {
  if (override === 'nft' || override === 'legacy') return { flavour: override, reason: 'configured' };
  const mangle: { flavour: IptablesFlavour; family: IPFamily; dump: string }[] = [];
  for (const flavour of ['nft', 'legacy'] as const) {
    for (const family of ['IPv4', 'IPv6'] as const) {
      const dump = await saveOutput(runner, iptablesCommands(flavour, family).save, ['-t', 'mangle']);
      if (hasChain(dump, HINT_CHAINS)) return { flavour, reason: `hint chain in ${family} mangle table` };
      mangle.push({ flavour, family, dump });
    }
  }
  const own = mangle.find((m) => hasChain(m.dump, [OWN_CANARY]));
  if (own) return { flavour: own.flavour, reason: `${OWN_CANARY} of an earlier run in ${own.family} mangle table` };
  const counts = { nft: 0, legacy: 0 };
  for (const flavour of ['nft', 'legacy'] as const) {
    for (const family of ['IPv4', 'IPv6'] as const) {
      counts[flavour] += countRules(await saveOutput(runner, iptablesCommands(flavour, family).save, []));
    }
  }
  const flavour = counts.legacy > counts.nft ? 'legacy' : 'nft';
  return { flavour, reason: `rule count nft=${counts.nft} legacy=${counts.legacy}` };
}

/** [major, minor, patch] from `iptables --version` ("iptables v1.8.9 (nf_tables)"). */
export function parseIptablesVersion(text: string): [number, number, number] | undefined {
  const m = /v(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** Upstream's RandomFullyMinVersion: MASQUERADE --random-fully needs iptables 1.6.2. */
const RANDOM_FULLY_MIN_VERSION = [1, 6, 2] as const;

/**
 * Whether these iptables binaries accept MASQUERADE --random-fully. An unknown version counts as
 * too old, as upstream does, so that a restore never fails on the option.
 */
export async function iptablesHasRandomFully(runner: CommandRunner, commands: IptablesCommands): Promise<boolean> {
  const output = await saveOutput(runner, commands.iptables, ['--version']);
  const version = parseIptablesVersion(output);
  if (!version) return false;
  for (let i = 0; i < 3; i++) if (version[i] !== RANDOM_FULLY_MIN_VERSION[i]) return version[i]! > RANDOM_FULLY_MIN_VERSION[i]!;
  return true;
}
