// Reading iptables-save output: which chains exist and what rules they hold.

import type { IptablesTable } from './iptables-restore.js';

export interface SavedChain {
  readonly name: string;
  /** Policy of a built-in chain ("ACCEPT", "DROP"); undefined for user chains. */
  readonly policy: string | undefined;
  /** Each rule's arguments after `-A CHAIN`, as printed. */
  readonly rules: string[];
}

export type SavedTable = Map<string, SavedChain>;

/** Parses `iptables-save` output into tables of chains, keeping chain and rule order. */
export function parseIptablesSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let current: SavedTable | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      current = new Map();
      tables.set(line.slice(1), current);
    } else if (line === 'COMMIT') {
      current = undefined;
    } else if (current && line.startsWith(':')) {
      const [name = '', policy = '-'] = line.slice(1).split(' ');
      current.set(name, { name, policy: policy === '-' ? undefined : policy, rules: [] });
    } else if (current && line.startsWith('-A ')) {
      const space = line.indexOf(' ', 3);
      const chainName = space < 0 ? line.slice(3) : line.slice(3, space);
      let chain = current.get(chainName);
      if (!chain) {
        chain = { name: chainName, policy: undefined, rules: [] };
        current.set(chainName, chain);
      }
      chain.rules.push(space < 0 ? '' : line.slice(space + 1));
    }
  }
  return tables;
}

/** Chain names of one table, without parsing rules (cheap on large dumps). */
export function savedChainNames(text: string, table: IptablesTable): Set<string> {
  const names = new Set<string>();
  let inTable = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) inTable = line.slice(1).trim() === table;
    else if (inTable && line.startsWith(':')) names.add(line.slice(1, line.indexOf(' ') < 0 ? undefined : line.indexOf(' ')));
  }
  return names;
}

/** Splits a rule into arguments the way iptables-restore does: double quotes group, backslash escapes. */
export function splitRuleArgs(line: string): string[] {
  const args: string[] = [];
  let current = '';
  let inQuotes = false;
  let hasToken = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      current += line[++i];
      hasToken = true;
    } else if (c === '"') {
      inQuotes = !inQuotes;
      hasToken = true;
    } else if (!inQuotes && (c === ' ' || c === '\t')) {
      if (hasToken) args.push(current);
      current = '';
      hasToken = false;
    } else {
      current += c;
      hasToken = true;
    }
  }
  if (hasToken) args.push(current);
  return args;
}
