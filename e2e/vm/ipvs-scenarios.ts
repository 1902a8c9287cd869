// The scenarios the in-VM IPVS suite reports, shared by the guest suite and the host test.

import { conformanceCheckNames, type ConformanceOptions } from '@kube-proxy-ts/testing/conformance';

export const IPVS_SCENARIOS = {
  clusterTCP: 'ClusterIP TCP reaches every endpoint',
  clusterUDP: 'ClusterIP UDP reaches every endpoint',
  nodePort: 'NodePort from outside the cluster',
  externalIP: 'externalIP from outside the cluster',
  affinity: 'ClientIP affinity keeps one endpoint',
  noEndpoints: 'no endpoints: connections fail',
  filter: 'a service IP does not expose other node ports',
  removedEndpoint: 'a removed endpoint gets no new connections',
  udpEndpointReplaced: 'a UDP client keeps working when its endpoint is replaced',
  udpFirstEndpoint: 'a UDP client refused while a service had no endpoint reaches its first one',
  graceful: 'graceful termination keeps a live connection until it ends',
  explain: 'explain names the endpoints each traffic check reached, and the drop of a service without endpoints',
  driftRepaired: 'a virtual server and its kube-ipvs0 address removed by hand come back at the next sync, counted as drift',
  foreignSurvives: 'a foreign IPVS service survives syncs',
  cleanup: 'cleanup leaves nothing of ours and keeps the foreign service',
} as const;

/**
 * The backend conformance checks run on the real kernel: one seeded sequence (8 syncs of up to
 * 4 events; seed 4 adds, updates and deletes services and slices, changes the node's zone, and
 * turns on ClientIP affinity and both Local traffic policies) and the cleanup check. The
 * others run over the in-memory node only: every check costs tens of seconds in the VM.
 */
export const IPVS_CONFORMANCE = {
  checks: ['partialSync', 'cleanup'],
  seeds: [8],
  steps: 6,
  maxEventsPerStep: 5,
} as const satisfies ConformanceOptions;

/** What the guest reports each conformance check as. */
export const conformanceResultName = (check: string) => `conformance: ${check}`;

export const IPVS_CONFORMANCE_RESULTS = conformanceCheckNames(IPVS_CONFORMANCE).map(conformanceResultName);

/** Result lines: `KPTS-RESULT PASS <name> (...)` or `KPTS-RESULT FAIL <name> :: <why>`. */
export function parseGuestResults(console: string): Map<string, { ok: boolean; detail: string }> {
  const results = new Map<string, { ok: boolean; detail: string }>();
  for (const line of console.split('\n')) {
    const m = /^KPTS-RESULT (PASS|FAIL) (.*?)(?: \(\d+ ms\)| :: (.*))?\r?$/.exec(line);
    if (m) results.set(m[2]!, { ok: m[1] === 'PASS', detail: m[3] ?? '' });
  }
  return results;
}
