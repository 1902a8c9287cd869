// nfacct accounting on this kernel, inside a sandbox node namespace: the objects upstream's
// iptables mode counts into are created, an iptables rule with `-m nfacct` feeds one, and the
// count read back is what the kubeproxy_iptables_*_packets_total series export.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NFACCT_CT_STATE_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED, ensureNFAcctCounters, getNFAcctCounter, listNFAcctCounters } from '@kube-proxy-ts/netfilter';
import { createSandbox, sandboxUnsupportedReason, type Sandbox } from '@kube-proxy-ts/testing';

const unsupported = sandboxUnsupportedReason(['iptables', 'nfacct']);
if (unsupported) console.log(`nfacct e2e skipped: ${unsupported}`);

describe.skipIf(unsupported !== undefined)('nfacct counters on this kernel', () => {
  let sb: Sandbox | undefined;
  beforeAll(async () => {
    sb = await createSandbox({ tag: 'nfacct', pods: 1 });
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('creates the objects once, counts packets matched by -m nfacct, and reads them back', async () => {
    const runner = sb!.runner('node');
    expect(await listNFAcctCounters(runner)).toEqual([]);
    const names = [NFACCT_CT_STATE_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED];
    expect([...(await ensureNFAcctCounters(runner, names))].sort()).toEqual([...names].sort());

    // A counting-only rule (no target) on the traffic the node forwards to the pod.
    const pod = sb!.pods[0]!;
    await sb!.execOk('node', ['iptables', '-w', '-A', 'FORWARD', '-d', pod.ip, '-m', 'nfacct', '--nfacct-name', NFACCT_CT_STATE_INVALID_DROPPED]);
    expect(await sb!.http('client', pod.ip, 8080)).toBe(pod.name);
    const counted = await getNFAcctCounter(runner, NFACCT_CT_STATE_INVALID_DROPPED);
    expect(counted?.packets).toBeGreaterThan(0);

    // Ensuring again keeps the count.
    await ensureNFAcctCounters(runner, names);
    expect((await getNFAcctCounter(runner, NFACCT_CT_STATE_INVALID_DROPPED))?.packets).toBe(counted?.packets);
    expect((await getNFAcctCounter(runner, NFACCT_LOCALHOST_NODEPORTS_ACCEPTED))?.packets).toBe(0);
  });
});
