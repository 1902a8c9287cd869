import { describe, expect, it } from 'vitest';
import { endpointRecord, servicePortRecord } from '@kube-proxy-ts/core/fixtures';
import { userspaceExplain, userspaceKernelView, type RunningListener } from './kernel-view.js';
import type { Portal } from './portals.js';

const web = servicePortRecord({ name: { namespace: 'e2e', name: 'web', port: 'http', protocol: 'TCP' }, clusterIP: '10.96.0.10', nodePort: 30080, type: 'NodePort' });
const empty = servicePortRecord({ name: { namespace: 'e2e', name: 'empty', port: 'http', protocol: 'TCP' }, clusterIP: '10.96.0.12' });
const portal = (kind: Portal['kind'], ip: string | undefined, port: number): Portal => ({ kind, ip, port, protocol: 'TCP', sourceRanges: [], comment: 'x' });
const listener = (sp: typeof web, portals: Portal[], endpoints: string[], serving: boolean): RunningListener => ({
  plan: { id: sp.key, servicePort: sp, scope: 'all', protocol: 'TCP', endpoints: endpoints.map((ip) => endpointRecord(ip, 8080)), affinityTimeoutMs: 0, portals },
  port: 36000,
  serving,
  activeConnections: 3,
});
const listeners = [
  listener(web, [portal('ClusterIP', '10.96.0.10', 80), portal('NodePort', undefined, 30080)], ['10.244.1.11', '10.244.1.12'], true),
  listener(empty, [portal('ClusterIP', '10.96.0.12', 80)], [], false),
];

describe('userspace kernel view and explain', () => {
  it('reads the running listeners: portals, endpoints, closed ones', () => {
    const v = userspaceKernelView(listeners, [web, empty], 'IPv4');
    expect(v.servicePorts[web.key]).toEqual({
      frontends: ['10.96.0.10:80/TCP', 'NodePort 30080/TCP'],
      endpoints: ['10.244.1.11:8080', '10.244.1.12:8080'],
      blocked: [],
      objects: ['listener TCP port 36000, open, 3 connections'],
    });
    expect(v.servicePorts[empty.key]!.blocked).toEqual(['10.96.0.12:80/TCP reject: listener closed, no endpoints']);
    expect(userspaceKernelView(listeners, [web], 'IPv4').unowned).toEqual([`listener TCP port 36000, closed, 3 connections of ${empty.key}`]);
  });

  it('names the listener a destination leads to and its round-robin endpoints', () => {
    const r = userspaceExplain(listeners, { src: '192.168.50.2', dst: '192.168.50.1', port: 30080, protocol: 'TCP' }, ['192.168.50.1'], 'IPv4');
    expect(r.servicePort).toBe('e2e/web:http');
    expect(r.paths.map((p) => [p.endpoint, p.probability])).toEqual([['10.244.1.11:8080', 0.5], ['10.244.1.12:8080', 0.5]]);
    expect(r.paths[0]!.steps).toEqual(['portal NodePort NodePort 30080/TCP', 'listener TCP port 36000, open, 3 connections']);
    const closed = userspaceExplain(listeners, { src: '10.244.1.100', dst: '10.96.0.12', port: 80, protocol: 'TCP' }, [], 'IPv4');
    expect(closed.paths).toEqual([expect.objectContaining({ verdict: 'reject', reason: 'no endpoints: the listener is closed' })]);
    expect(userspaceExplain(listeners, { src: '10.244.1.100', dst: '10.96.0.10', port: 81, protocol: 'TCP' }, [], 'IPv4').paths[0]!.reason).toMatch(/no service portal/);
  });
});
