// A model of the kernel's iptables tables for unit tests. It applies what the backend actually
// sends (iptables-restore --noflush payloads, single-rule iptables commands) with the kernel's
// rules that matter here: a payload applies whole or not at all, a rule may only jump to a chain
// that exists, a chain that is still jumped to cannot be deleted, `:CHAIN` creates or flushes.
// It answers iptables-save and `-S CHAIN` from what it holds, so the backend reads back its own
// writes, not its plan.

import type { CommandResult, CommandRunner } from '@kube-proxy-ts/core';
import { formatRestoreLine, splitRuleArgs } from '@kube-proxy-ts/netfilter';

type Chains = Map<string, string[]>;

const BUILTIN: Readonly<Record<string, readonly string[]>> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
};

/** The canonical text of a rule, whether it came as an argv or as a restore line. */
const canonical = (args: readonly string[]): string => formatRestoreLine(args);

/** The chain a rule jumps or goes to, when it names one (targets are upper case too: only existing chains count). */
function jumpTarget(rule: string): string | undefined {
  const args = splitRuleArgs(rule);
  const i = Math.max(args.lastIndexOf('-j'), args.lastIndexOf('-g'));
  return i >= 0 ? args[i + 1] : undefined;
}

const TARGETS = new Set(['ACCEPT', 'DROP', 'RETURN', 'REJECT', 'MASQUERADE', 'DNAT', 'SNAT', 'MARK', 'LOG', 'CONNMARK', 'NFLOG', 'NOTRACK', 'CT']);

export class IptablesKernelModel {
  private tables = new Map<string, Chains>();

  constructor() {
    for (const [table, chains] of Object.entries(BUILTIN)) this.tables.set(table, new Map(chains.map((c) => [c, []])));
  }

  /** Every table, chain and rule, as `table -> chain -> rules`. */
  snapshot(): Record<string, Record<string, string[]>> {
    const out: Record<string, Record<string, string[]>> = {};
    for (const [table, chains] of this.tables) out[table] = Object.fromEntries([...chains].map(([c, r]) => [c, [...r]]));
    return out;
  }

  /** Applies a restore payload (`--noflush`): all of it, or nothing and an error naming the line. */
  restore(payload: string): void {
    const next = this.copy();
    let table: Chains | undefined;
    let tableName = '';
    const lines = payload.split('\n');
    for (const [i, raw] of lines.entries()) {
      const line = raw.trim();
      const fail = (why: string): never => {
        throw new Error(`line ${i + 1} failed: ${why}`);
      };
      if (line === '' || line.startsWith('#')) continue;
      if (line.startsWith('*')) {
        tableName = line.slice(1);
        table = next.get(tableName) ?? fail(`no table ${tableName}`);
        continue;
      }
      if (!table) fail('no table selected');
      if (line === 'COMMIT') {
        table = undefined;
        continue;
      }
      const t = table!;
      if (line.startsWith(':')) {
        const name = line.slice(1).split(' ')[0]!;
        t.set(name, []);
        continue;
      }
      const [op, chain = '', ...rest] = splitRuleArgs(line);
      const rules = t.get(chain) ?? fail(`no chain ${chain} in ${tableName}`);
      if (op === '-X') {
        if (BUILTIN[tableName]?.includes(chain)) fail(`cannot delete built-in chain ${chain}`);
        if (rules.length > 0) fail(`chain ${chain} is not empty`);
        for (const [other, otherRules] of t) if (other !== chain && otherRules.some((r) => jumpTarget(r) === chain)) fail(`chain ${chain} is still referenced from ${other}`);
        t.delete(chain);
        continue;
      }
      if (op === '-F') {
        rules.length = 0;
        continue;
      }
      let args = rest;
      let position: number | undefined;
      if (op === '-I' && /^\d+$/.test(args[0] ?? '')) {
        position = Number(args[0]);
        args = args.slice(1);
      }
      const rule = canonical(args);
      const target = jumpTarget(rule);
      if ((op === '-A' || op === '-I') && target && !TARGETS.has(target) && !t.has(target)) fail(`no chain/target ${target}`);
      if (op === '-A') rules.push(rule);
      else if (op === '-I') rules.splice((position ?? 1) - 1, 0, rule);
      else if (op === '-D') {
        const at = rules.indexOf(rule);
        if (at < 0) fail(`no such rule in ${chain}`);
        rules.splice(at, 1);
      } else fail(`unknown command ${op}`);
    }
    this.tables = next;
  }

  /** iptables-save of one table. */
  save(table: string): string {
    const chains = this.tables.get(table);
    if (!chains) return '';
    const builtin = BUILTIN[table] ?? [];
    const lines = [`*${table}`];
    for (const chain of chains.keys()) lines.push(`:${chain} ${builtin.includes(chain) ? 'ACCEPT' : '-'} [0:0]`);
    for (const [chain, rules] of chains) for (const rule of rules) lines.push(`-A ${chain} ${rule}`);
    lines.push('COMMIT', '');
    return lines.join('\n');
  }

  /**
   * A runner that sends `<restore>`, `<save>` and `<iptables>` calls to this model and every
   * other command to `fallback`.
   */
  runner(commands: { readonly iptables: string; readonly save: string; readonly restore: string }, fallback: CommandRunner): CommandRunner {
    const ok = (stdout = ''): CommandResult => ({ code: 0, stdout, stderr: '' });
    const failed = (stderr: string, code = 1): CommandResult => ({ code, stdout: '', stderr });
    return {
      run: async (command, args, options) => {
        if (command === commands.restore) {
          try {
            this.restore(String(options?.stdin ?? ''));
            return ok();
          } catch (e) {
            return failed(`${commands.restore}: ${(e as Error).message}`, 2);
          }
        }
        if (command === commands.save) {
          const t = args.indexOf('-t');
          return ok(t >= 0 ? this.save(args[t + 1]!) : [...this.tables.keys()].map((name) => this.save(name)).join(''));
        }
        if (command !== commands.iptables) return fallback.run(command, args, options);
        const rest = args.filter((a) => a !== '-w');
        const table = rest[0] === '-t' ? rest[1]! : 'filter';
        const [op, chain = '', ...ruleArgs] = rest[0] === '-t' ? rest.slice(2) : rest;
        const chains = this.tables.get(table);
        const rules = chains?.get(chain);
        if (op === '-N') {
          if (rules) return failed('iptables: Chain already exists.');
          return this.apply(`*${table}\n:${chain} - [0:0]\nCOMMIT\n`);
        }
        if (!rules) return failed(`iptables: No chain/target/match by that name.`);
        if (op === '-S') return ok(`-P ${chain} ACCEPT\n${rules.map((r) => `-A ${chain} ${r}`).join('\n')}\n`);
        if (op === '-C') return rules.includes(canonical(ruleArgs)) ? ok() : failed('iptables: Bad rule (does a matching rule exist in that chain?).');
        if (op === '-A' || op === '-I' || op === '-D') return this.apply(`*${table}\n${op} ${chain} ${canonical(ruleArgs)}\nCOMMIT\n`);
        return failed(`unsupported: ${args.join(' ')}`);
      },
    };
  }

  private apply(payload: string): CommandResult {
    try {
      this.restore(payload);
      return { code: 0, stdout: '', stderr: '' };
    } catch (e) {
      return { code: 1, stdout: '', stderr: `iptables: ${(e as Error).message}` };
    }
  }

  private copy(): Map<string, Chains> {
    return new Map([...this.tables].map(([t, chains]) => [t, new Map([...chains].map(([c, r]) => [c, [...r]]))]));
  }
}
