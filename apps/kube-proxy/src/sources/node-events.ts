// Events about this Node, as upstream's kube-proxy records them (client-go's events.k8s.io/v1
// recorder): "Starting" when the proxy starts, warnings when a server it should run cannot. An
// event is best effort: a refused or failed create is logged once and never holds anything up.

import { hostname } from 'node:os';
import type { EventsV1Event } from '@kubernetes/client-node';
import type { Logger } from '@kube-proxy-ts/core';
import { describeError } from './informer.js';
import type { ApiClient } from './rest-client.js';

export interface NodeEvent {
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly action: string;
  readonly note?: string;
}

export type NodeEventRecorder = (event: NodeEvent) => void;

const REPORTING_CONTROLLER = 'kube-proxy';

/** A MicroTime as the API writes it: RFC 3339 with six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** The Event client-go's recorder writes for `event` about Node `nodeName` at `now` (ms), as JSON. */
export function nodeEvent(nodeName: string, event: NodeEvent, now: number, host = hostname()): Omit<EventsV1Event, 'eventTime'> & { eventTime: string } {
  // client-go names events <object>.<unix nanoseconds in hex>; ms precision keeps them unique enough here.
  const name = `${nodeName}.${(BigInt(now) * 1_000_000n).toString(16)}`;
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    // A cluster-scoped object's events go to "default", as client-go's.
    metadata: { name, namespace: 'default' },
    eventTime: microTime(now),
    reportingController: REPORTING_CONTROLLER,
    reportingInstance: `${REPORTING_CONTROLLER}-${host}`,
    action: event.action,
    reason: event.reason,
    regarding: { apiVersion: 'v1', kind: 'Node', name: nodeName, namespace: '' },
    note: event.note ?? '',
    type: event.type,
  };
}

export function nodeEventRecorder(client: ApiClient, nodeName: string, logger: Logger): NodeEventRecorder {
  let failedBefore = false;
  return (event) => {
    const body = nodeEvent(nodeName, event, Date.now());
    client.post('/apis/events.k8s.io/v1/namespaces/default/events', body).then(
      () => logger.debug({ reason: event.reason, name: body.metadata?.name }, 'recorded an event on the Node'),
      (err: unknown) => {
        const fields = { reason: event.reason, err: describeError(err) };
        // One warning: a cluster that refuses events refuses all of them.
        if (failedBefore) logger.debug(fields, 'could not record an event on the Node');
        else logger.warn(fields, 'could not record an event on the Node');
        failedBefore = true;
      },
    );
  };
}
