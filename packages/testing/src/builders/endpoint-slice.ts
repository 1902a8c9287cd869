// endpointSlice(): a discovery.k8s.io/v1 EndpointSlice of one Service.

import type { DiscoveryV1EndpointPort, V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import { DEFAULT_PORT } from './service.js';
import { ipFamilyOfAddress } from './ids.js';

/** One endpoint. A bare string is a ready endpoint with that address. */
export type EndpointInput =
  | string
  | {
      /** One address (the API allows more, consumers use the first). */
      ip?: string;
      addresses?: string[];
      /** Default true. */
      ready?: boolean;
      /** Default: same as `ready` (kept separate so terminating-but-serving can be written). */
      serving?: boolean;
      /** Default false. */
      terminating?: boolean;
      nodeName?: string;
      zone?: string;
      hostname?: string;
      /** hints.forZones */
      zoneHints?: string[];
      /** hints.forNodes */
      nodeHints?: string[];
    };

export interface EndpointPortInput {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

export interface EndpointSliceOptions {
  /** Slice name; default `<serviceName>-<suffix>` with a stable suffix. */
  name?: string;
  /** Default: the family of the first endpoint address, else IPv4. */
  addressType?: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints?: EndpointInput[];
  /** Default: one TCP port named `p80`, port 80, matching service()'s default. */
  ports?: EndpointPortInput[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Sets annotation endpoints.kubernetes.io/last-change-trigger-time. */
  lastChangeTriggerTime?: Date | string;
  resourceVersion?: string;
}

export type EndpointSliceMutator = (slice: V1EndpointSlice) => void;

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const LAST_CHANGE_TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

function toEndpoint(input: EndpointInput): V1Endpoint {
  const e = typeof input === 'string' ? { ip: input } : input;
  const addresses = e.addresses ?? (e.ip !== undefined ? [e.ip] : []);
  if (addresses.length === 0) throw new Error('endpointSlice(): an endpoint needs `ip` or `addresses`');
  const ready = e.ready ?? true;
  const endpoint: V1Endpoint = {
    addresses: [...addresses],
    conditions: { ready, serving: e.serving ?? ready, terminating: e.terminating ?? false },
  };
  if (e.nodeName !== undefined) endpoint.nodeName = e.nodeName;
  if (e.zone !== undefined) endpoint.zone = e.zone;
  if (e.hostname !== undefined) endpoint.hostname = e.hostname;
  if (e.zoneHints !== undefined || e.nodeHints !== undefined) {
    endpoint.hints = {};
    if (e.zoneHints) endpoint.hints.forZones = e.zoneHints.map((name) => ({ name }));
    if (e.nodeHints) endpoint.hints.forNodes = e.nodeHints.map((name) => ({ name }));
  }
  return endpoint;
}

/**
 * An EndpointSlice labelled for `serviceName`.
 *
 *   endpointSlice('ns1', 'svc1', { endpoints: ['10.180.0.1', { ip: '10.180.0.2', ready: false, terminating: true }] })
 *   endpointSlice('ns1', 'svc1', 'svc1-b', { ports: [{ name: 'p53', port: 53, protocol: 'UDP' }] })
 */
export function endpointSlice(
  namespace: string,
  serviceName: string,
  nameOrOptions?: string | EndpointSliceOptions | EndpointSliceMutator,
  optionsOrMutator?: EndpointSliceOptions | EndpointSliceMutator,
  mutate?: EndpointSliceMutator,
): V1EndpointSlice {
  const args = [nameOrOptions, optionsOrMutator, mutate];
  const sliceName = typeof nameOrOptions === 'string' ? nameOrOptions : undefined;
  const opts = (args.find((a) => typeof a === 'object' && a !== null) as EndpointSliceOptions | undefined) ?? {};
  const mutators = args.filter((a): a is EndpointSliceMutator => typeof a === 'function');

  const endpoints = (opts.endpoints ?? []).map(toEndpoint);
  const firstAddress = endpoints[0]?.addresses[0];
  const addressType = opts.addressType ?? (firstAddress ? ipFamilyOfAddress(firstAddress) : 'IPv4');
  const ports = (opts.ports ?? [{ ...DEFAULT_PORT }]).map((p): DiscoveryV1EndpointPort => {
    const port: DiscoveryV1EndpointPort = { port: p.port, protocol: p.protocol ?? 'TCP' };
    if (p.name !== undefined) port.name = p.name;
    if (p.appProtocol !== undefined) port.appProtocol = p.appProtocol;
    return port;
  });
  const annotations: Record<string, string> = { ...opts.annotations };
  if (opts.lastChangeTriggerTime !== undefined) {
    const t = opts.lastChangeTriggerTime;
    annotations[LAST_CHANGE_TRIGGER_TIME_ANNOTATION] = typeof t === 'string' ? t : t.toISOString();
  }
  const name = opts.name ?? sliceName ?? `${serviceName}-abcde`;

  const slice: V1EndpointSlice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      namespace,
      name,
      uid: `uid-${namespace}-${name}`,
      labels: { ...opts.labels, [SERVICE_NAME_LABEL]: serviceName },
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      ...(opts.resourceVersion ? { resourceVersion: opts.resourceVersion } : {}),
    },
    addressType,
    endpoints,
    ports,
  };
  for (const m of mutators) m(slice);
  return slice;
}
