import { describe, expect, it } from 'vitest';
import { ClusterFeed } from './cluster-feed.js';
import { service } from './builders/service.js';
import { endpointSlice } from './builders/endpoint-slice.js';
import { node } from './builders/node.js';
import { changeSetRecord, endpointRecord, servicePortRecord } from './builders/records.js';

describe('ClusterFeed', () => {
  it('feeds adds, updates and deletes into a synced tracker', () => {
    const feed = new ClusterFeed({ node: node('node1', { addresses: ['192.168.50.1'] }) });
    expect(feed.tracker.isSynced()).toBe(true);
    feed.upsert(service('ns1', 'web', { clusterIP: '10.96.0.10' }), endpointSlice('ns1', 'web', { name: 'web-1', endpoints: ['10.244.1.1'] }));
    let { state, changes } = feed.checkpoint();
    expect(state.node.addresses).toEqual(['192.168.50.1']);
    expect(state.endpoints.get('ns1/web:p80/TCP')?.map((e) => e.hostPort)).toEqual(['10.244.1.1:80']);
    expect([...changes.servicePorts]).toEqual(['ns1/web:p80/TCP']);

    // A second upsert of the same slice is an update: the old endpoint goes away.
    feed.upsert(endpointSlice('ns1', 'web', { name: 'web-1', endpoints: ['10.244.1.2'] }));
    ({ state } = feed.checkpoint());
    expect(state.endpoints.get('ns1/web:p80/TCP')?.map((e) => e.hostPort)).toEqual(['10.244.1.2:80']);

    feed.deleteSlice('ns1', 'web-1').deleteService('ns1', 'web');
    ({ state, changes } = feed.checkpoint());
    expect(state.services.size).toBe(0);
    expect([...changes.servicePorts]).toEqual(['ns1/web:p80/TCP']);
  });

  it('reports a node update as a node change', () => {
    const feed = new ClusterFeed({ ipFamily: 'IPv6', node: node('node1', { addresses: ['fd00::1'] }) });
    feed.checkpoint();
    feed.updateNode(node('node1', { addresses: ['fd00::2'] }));
    const { state, changes } = feed.checkpoint();
    expect(changes.nodeChanged).toBe(true);
    expect(state.node.addresses).toEqual(['fd00::2']);
  });
});

describe('record builders', () => {
  it('derive the key from the name and serving from ready', () => {
    expect(servicePortRecord({ name: { namespace: 'a', name: 'dns', port: 'dns', protocol: 'UDP' } })).toMatchObject({ key: 'a/dns:dns/UDP', protocol: 'UDP' });
    expect(endpointRecord('fd00::1', 80, { ready: false })).toMatchObject({ hostPort: '[fd00::1]:80', ready: false, serving: false, isLocal: false });
    expect(changeSetRecord({ nodeChanged: true })).toMatchObject({ nodeChanged: true, servicePorts: new Set() });
  });
});
