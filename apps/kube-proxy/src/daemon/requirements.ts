// What each built-in mode needs from the machine, checked before start so that a missing tool
// or kernel feature gives one clear message instead of a failed sync loop.

import { existsSync } from 'node:fs';
import type { CommandRunner, IPFamily } from '@kube-proxy-ts/core';

interface Requirement {
  readonly tool: string;
  readonly args: readonly string[];
  readonly why: string;
}

function toolsFor(mode: string, family: IPFamily): Requirement[] {
  const ipt = family === 'IPv6' ? 'ip6tables' : 'iptables';
  const iptables: Requirement[] = [
    { tool: `${ipt}-restore`, args: ['--version'], why: 'writes the rules' },
    { tool: `${ipt}-save`, args: ['--version'], why: 'reads the rules' },
    { tool: ipt, args: ['--version'], why: 'adds the jump rules' },
  ];
  switch (mode) {
    case 'iptables':
    case 'userspace':
      return iptables;
    case 'nftables':
      return [{ tool: 'nft', args: ['--version'], why: 'writes the nftables ruleset' }];
    case 'ipvs':
      return [...iptables, { tool: 'ipset', args: ['--version'], why: 'holds the IPVS-mode address sets' }, { tool: 'ipvsadm', args: ['--version'], why: 'programs IPVS virtual servers' }];
    default:
      return [];
  }
}

export interface RequirementOptions {
  readonly runner: CommandRunner;
  /** For tests: whether a path exists. */
  readonly exists?: (path: string) => boolean;
}

/** Problems that prevent `mode` from running for `family`; empty when it can run. */
export async function missingRequirements(mode: string, family: IPFamily, opts: RequirementOptions): Promise<string[]> {
  const problems: string[] = [];
  for (const req of toolsFor(mode, family)) {
    try {
      await opts.runner.run(req.tool, req.args, { timeoutMs: 10_000 });
    } catch {
      problems.push(`${req.tool} is not installed or not on PATH (the ${mode} mode uses it: it ${req.why})`);
    }
  }
  if (mode === 'ipvs') {
    const exists = opts.exists ?? existsSync;
    if (!exists('/proc/net/ip_vs')) {
      problems.push('the kernel has no IPVS support (/proc/net/ip_vs is missing: load the ip_vs module, or use --proxy-mode=iptables or nftables)');
    }
  }
  return problems;
}
