// The order ProxyState promises for each service port's endpoints (contract.ts): one per
// hostPort, sorted by hostPort as a string, whatever order the slices list them in.

import { describe, expect, it } from 'vitest';
import { ProxyStateTracker } from './proxy-state-tracker.js';
import { slice, svc, v1Node } from './builders.test-support.js';

describe('ProxyState endpoint order', () => {
  // "10.0.0.100:80" before "10.0.0.10:80": '0' sorts before ':'.
  it('sorts by hostPort in code-unit order, not by address value', () => {
    const t = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: 'node-a' });
    t.onNodeAdd(v1Node('node-a'));
    t.onServiceAdd(svc('ns', 'web', { ports: [{ name: 'p80', port: 80, protocol: 'TCP' }] }));
    // Two slices whose port "p80" targets different numbers, listed out of order.
    t.onEndpointSliceAdd(slice('ns', 'web', 'web-b', ['10.0.0.9', '10.0.0.10', '10.0.0.100'], [{ name: 'p80', port: 80 }]));
    t.onEndpointSliceAdd(slice('ns', 'web', 'web-a', ['10.0.0.10'], [{ name: 'p80', port: 8080 }]));
    t.onServicesSynced();
    t.onEndpointSlicesSynced();
    t.onNodeSynced();
    const { state } = t.checkpoint();
    expect(state.endpoints.get('ns/web:p80/TCP')?.map((e) => e.hostPort)).toEqual(['10.0.0.100:80', '10.0.0.10:80', '10.0.0.10:8080', '10.0.0.9:80']);
  });
});
