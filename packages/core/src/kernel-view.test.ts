import { describe, expect, it } from 'vitest';
import { endpointRecord, servicePortRecord } from './fixtures.js';
import { desiredFrontends, servicePortDrift } from './kernel-view.js';
import { endpointSelection } from './topology.js';

const node = { name: 'node1', zone: 'zone-a' };
const here = (ip: string, o = {}) => endpointRecord(ip, 80, { nodeName: 'node1', isLocal: true, zone: 'zone-a', ...o });
const there = (ip: string, o = {}) => endpointRecord(ip, 80, { nodeName: 'node2', zone: 'zone-b', ...o });

describe('endpointSelection', () => {
  it('gives the reason an endpoint is left out: not ready, terminating while Ready ones exist', () => {
    const sp = servicePortRecord();
    const sel = endpointSelection(sp, [here('10.0.0.1'), here('10.0.0.2', { ready: false, serving: false }), here('10.0.0.3', { ready: false, serving: true, terminating: true })], node);
    expect(sel.map((s) => [s.endpoint.ip, s.cluster, s.reason])).toEqual([
      ['10.0.0.1', true, undefined],
      ['10.0.0.2', false, 'not ready'],
      ['10.0.0.3', false, 'terminating, and Ready endpoints exist'],
    ]);
  });

  it('names the other zone of topology hints and the Local traffic policy', () => {
    const hinted = endpointSelection(servicePortRecord(), [here('10.0.0.1', { zoneHints: ['zone-a'] }), there('10.0.0.2', { zoneHints: ['zone-b'] })], node);
    expect(hinted[1]).toMatchObject({ cluster: false, reason: 'topology hints: for other zones (this node: zone-a)' });
    const etpLocal = servicePortRecord({ type: 'NodePort', nodePort: 30000, externalPolicyLocal: true });
    const sel = endpointSelection(etpLocal, [here('10.0.0.1'), there('10.0.0.2')], node);
    expect(sel.map((s) => [s.endpoint.ip, s.cluster, s.local, s.reason])).toEqual([
      ['10.0.0.1', true, true, undefined],
      ['10.0.0.2', true, false, 'on another node (node2): externalTrafficPolicy Local'],
    ]);
    const itpLocal = endpointSelection(servicePortRecord({ internalPolicyLocal: true }), [there('10.0.0.2')], node);
    expect(itpLocal[0]).toMatchObject({ cluster: false, local: false, reason: 'on another node (node2): internalTrafficPolicy Local' });
  });
});

describe('servicePortDrift', () => {
  const sp = servicePortRecord({ type: 'NodePort', nodePort: 30000, externalIPs: ['192.0.2.1'] });
  const eps = [here('10.0.0.1'), here('10.0.0.2', { ready: false, serving: false })];

  it('is undefined when the kernel holds what a sync would program', () => {
    expect(desiredFrontends(sp)).toEqual(['172.30.0.1:80/TCP', '192.0.2.1:80/TCP', 'NodePort 30000/TCP']);
    expect(servicePortDrift(sp, eps, node, { frontends: desiredFrontends(sp), endpoints: ['10.0.0.1:80'], blocked: [], objects: [] })).toBeUndefined();
  });

  it('lists what is missing and what is there without reason', () => {
    const drift = servicePortDrift(sp, eps, node, { frontends: ['172.30.0.1:80/TCP', '172.30.0.9:80/TCP'], endpoints: ['10.0.0.2:80'], blocked: [], objects: [] });
    expect(drift).toEqual({
      missingFrontends: ['192.0.2.1:80/TCP', 'NodePort 30000/TCP'],
      unexpectedFrontends: ['172.30.0.9:80/TCP'],
      missingEndpoints: ['10.0.0.1:80'],
      unexpectedEndpoints: ['10.0.0.2:80'],
    });
    expect(servicePortDrift(sp, eps, node, undefined)?.missingFrontends).toHaveLength(3);
  });
});
