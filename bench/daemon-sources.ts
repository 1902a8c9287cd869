// The daemon's sources and trackers alone, for daemon.ts --modes none: the same source and
// ProxyStateTracker code as the daemon (from source), no backend, no rules. It answers the two
// metrics daemon.ts waits for, so the memory and start-up time of everything before a backend are
// measured the same way as the daemon's.
//
//   node --conditions=@kube-proxy-ts/source --import tsx daemon-sources.ts (--manifests=PATH | --kubeconfig=FILE) --metrics-bind-address=HOST:PORT

import { createServer } from 'node:http';
import { ProxyStateTracker } from '@kube-proxy-ts/core';
import { loadClusterAccess, startKubernetesSource, startManifestSource } from '@kube-proxy-ts/kube-proxy/sources';

const flag = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const [host, port] = (flag('metrics-bind-address') ?? '127.0.0.1:10249').split(':') as [string, string];
const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: 'bench-node' });
const manifests = flag('manifests');
const kubeconfig = flag('kubeconfig');
const source = manifests
  ? startManifestSource({ path: manifests, handler: tracker, logger: silent })
  : startKubernetesSource({ cluster: loadClusterAccess(kubeconfig), nodeName: 'bench-node', handler: tracker, logger: silent, clientConnection: { qps: 5, burst: 10 } });
let syncedAt = 0;
createServer((_req, res) => {
  const m = process.memoryUsage();
  res.end(
    `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} ${syncedAt}\nkubeproxy_sync_full_proxy_rules_duration_seconds_sum{ip_family="IPv4"} 0\n` +
      `nodejs_heap_size_total_bytes ${m.heapTotal}\nnodejs_heap_size_used_bytes ${m.heapUsed}\nnodejs_external_memory_bytes ${m.external}\n`,
  );
}).listen(Number(port), host);
await source.ready;
console.log('Sources synced');
const { state } = tracker.checkpoint();
let endpoints = 0;
for (const eps of state.endpoints.values()) endpoints += eps.length;
syncedAt = Date.now() / 1000;
console.log(`First sync done services=${state.services.size} endpoints=${endpoints}`);
