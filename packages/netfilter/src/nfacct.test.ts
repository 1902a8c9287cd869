// nfacct objects through the `nfacct` tool, with its output as recorded from nfacct 1.0.2 on a
// Linux 6.18 kernel (inside a network namespace).

import { describe, expect, it } from 'vitest';
import type { CommandResult, CommandRunner } from '@kube-proxy-ts/core';
import { NFACCT_CT_STATE_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED, ensureNFAcctCounters, getNFAcctCounter, listNFAcctCounters, parseNFAcctList } from './nfacct.js';

const LISTED = [
  '{ pkts = 00000000000000000042, bytes = 00000000000000004711 } = ct_state_invalid_dropped_pkts;',
  '{ pkts = 00000000000000000000, bytes = 00000000000000000000 } = localhost_nps_accepted_pkts;',
  '',
].join('\n');
const NO_SUCH_OBJECT: CommandResult = { code: 1, stdout: '', stderr: 'nfacct v1.0.2: error: No such file or directory\n' };
const NO_KERNEL_SUPPORT: CommandResult = { code: 1, stdout: '', stderr: 'nfacct v1.0.2: error: Protocol not supported\n' };

/** A runner answering `nfacct` from a table of objects, as the kernel would; records its calls. */
function fakeNFAcct(objects: Map<string, number> | 'unsupported' | 'not installed') {
  const calls: string[][] = [];
  const runner: CommandRunner = {
    async run(command, args) {
      calls.push([command, ...args]);
      if (objects === 'not installed') throw Object.assign(new Error(`spawn ${command} ENOENT`), { code: 'ENOENT' });
      if (objects === 'unsupported') return NO_KERNEL_SUPPORT;
      const line = (name: string) => `{ pkts = ${String(objects.get(name)).padStart(20, '0')}, bytes = ${'0'.repeat(20)} } = ${name};\n`;
      const [verb, name = ''] = args;
      if (verb === 'list') return { code: 0, stdout: [...objects.keys()].map(line).join(''), stderr: '' };
      if (verb === 'get') return objects.has(name) ? { code: 0, stdout: line(name), stderr: '' } : NO_SUCH_OBJECT;
      if (verb === 'add') {
        if (objects.has(name)) return { code: 1, stdout: '', stderr: 'nfacct v1.0.2: error: Device or resource busy\n' };
        objects.set(name, 0);
        return { code: 0, stdout: '', stderr: '' };
      }
      return { code: 1, stdout: '', stderr: 'unknown command' };
    },
  };
  return { runner, calls };
}

describe('nfacct', () => {
  it('parses the objects of `nfacct list`', () => {
    expect(parseNFAcctList(LISTED)).toEqual([
      { name: NFACCT_CT_STATE_INVALID_DROPPED, packets: 42, bytes: 4711 },
      { name: NFACCT_LOCALHOST_NODEPORTS_ACCEPTED, packets: 0, bytes: 0 },
    ]);
    expect(parseNFAcctList('garbage\n{ pkts = x } = y;\n')).toEqual([]);
  });

  it('reads one object, and nothing for one that does not exist', async () => {
    const { runner } = fakeNFAcct(new Map([[NFACCT_CT_STATE_INVALID_DROPPED, 7]]));
    expect(await getNFAcctCounter(runner, NFACCT_CT_STATE_INVALID_DROPPED)).toEqual({ name: NFACCT_CT_STATE_INVALID_DROPPED, packets: 7, bytes: 0 });
    expect(await getNFAcctCounter(runner, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED)).toBeUndefined();
  });

  it('creates only the missing objects, keeping the counts of existing ones', async () => {
    const objects = new Map([[NFACCT_CT_STATE_INVALID_DROPPED, 42]]);
    const { runner, calls } = fakeNFAcct(objects);
    const present = await ensureNFAcctCounters(runner, [NFACCT_CT_STATE_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED]);
    expect([...present].sort()).toEqual([NFACCT_CT_STATE_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED].sort());
    expect(calls.filter((c) => c[1] === 'add')).toEqual([['nfacct', 'add', NFACCT_LOCALHOST_NODEPORTS_ACCEPTED]]);
    expect(objects.get(NFACCT_CT_STATE_INVALID_DROPPED)).toBe(42);
  });

  it('reports no support when the kernel lacks nfnetlink_acct or the tool is not installed', async () => {
    for (const where of ['unsupported', 'not installed'] as const) {
      const { runner, calls } = fakeNFAcct(where);
      expect(await listNFAcctCounters(runner), where).toBeUndefined();
      expect(await ensureNFAcctCounters(runner, [NFACCT_CT_STATE_INVALID_DROPPED]), where).toEqual(new Set());
      // Nothing is created where nothing can be.
      expect(calls.some((c) => c[1] === 'add'), where).toBe(false);
      expect(await getNFAcctCounter(runner, NFACCT_CT_STATE_INVALID_DROPPED), where).toBeUndefined();
    }
  });
});
