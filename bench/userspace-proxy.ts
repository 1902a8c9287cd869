// The proxy side of bench/userspace.ts: runs the userspace backend in a process of its own (as
// the daemon would), listening on 127.0.0.1 with two TCP services whose endpoints are the
// bench's upstream servers. No rules are written (the runner is a no-op): the bench measures the
// data path. Usage: node --conditions=@kube-proxy-ts/source --import tsx userspace-proxy.ts BULK_PORT RR_PORT
// Prints {"bulk":PORT,"rr":PORT} once listening; exits when stdin closes.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { ProxyStateTracker, defaultProxyConfig, realClock, type BackendContext, type Logger } from '@kube-proxy-ts/core';
import { UserspaceBackend } from '@kube-proxy-ts/backend-userspace';

// prom-client as the backend itself resolves it (the bench package does not depend on it).
const fromBackend = createRequire(fileURLToPath(import.meta.resolve('@kube-proxy-ts/backend-userspace')));
const { Registry } = fromBackend('prom-client') as { Registry: new () => BackendContext['metrics'] };

const [bulkPort, rrPort] = process.argv.slice(2).map(Number);
if (!bulkPort || !rrPort) throw new Error('usage: userspace-proxy.ts BULK_PORT RR_PORT');

const quiet: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (o, m) => process.stderr.write(`${JSON.stringify(o)} ${m ?? ''}\n`),
  error: (o, m) => process.stderr.write(`${JSON.stringify(o)} ${m ?? ''}\n`),
  child: () => quiet,
};

function service(name: string, clusterIP: string) {
  return {
    metadata: { namespace: 'bench', name, uid: `uid-${name}`, resourceVersion: '1' },
    spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ipFamilies: ['IPv4'], ports: [{ name: 'tcp', port: 80, protocol: 'TCP', targetPort: 80 }], sessionAffinity: 'None', internalTrafficPolicy: 'Cluster' },
  };
}

function slice(name: string, port: number) {
  return {
    metadata: { namespace: 'bench', name: `${name}-1`, labels: { 'kubernetes.io/service-name': name }, resourceVersion: '1' },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true, serving: true, terminating: false } }],
    ports: [{ name: 'tcp', port, protocol: 'TCP' }],
  };
}

const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: 'bench' });
tracker.onNodeAdd({ metadata: { name: 'bench', labels: {} }, status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }] } });
tracker.onNodeSynced();
tracker.onServicesSynced();
tracker.onEndpointSlicesSynced();
tracker.onServiceAdd(service('bulk', '10.96.0.1') as never);
tracker.onServiceAdd(service('rr', '10.96.0.2') as never);
tracker.onEndpointSliceAdd(slice('bulk', bulkPort) as never);
tracker.onEndpointSliceAdd(slice('rr', rrPort) as never);

const backend = new UserspaceBackend({ ipFamily: 'IPv4', config: { ...defaultProxyConfig(), mode: 'userspace', bindAddress: '127.0.0.1' } });
const noRules = { run: async () => ({ code: 0, stdout: '', stderr: '' }) };
await backend.start({ logger: quiet, metrics: new Registry(), node: { name: 'bench', labels: {}, zone: undefined, podCIDRs: [], addresses: ['127.0.0.1'], eligible: true }, runner: noRules, clock: realClock });
const { state, changes } = tracker.checkpoint();
const result = await backend.sync(state, changes);
if (!result.ok) throw result.error ?? new Error('sync failed');
process.stdout.write(`${JSON.stringify({ bulk: backend.listenerPort('bench/bulk:tcp/TCP'), rr: backend.listenerPort('bench/rr:tcp/TCP') })}\n`);
process.stdin.resume();
process.stdin.on('end', () => void backend.stop().then(() => process.exit(0)));
