// Events about this Node, as upstream's kube-proxy records them (client-go's events.k8s.io/v1
// recorder): "Starting" when the proxy starts, warnings when a server it should run cannot. An
// event is best effort: a refused or failed create is logged once and never holds anything up.

import { hostname } from 'node:os';
import { EventsV1Api, type EventsV1Event, type KubeConfig, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from '@kube-proxy-ts/core';
import { describeError } from './informer.js';

export interface NodeEvent {
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly action: string;
  readonly note?: string;
}

export type NodeEventRecorder = (event: NodeEvent) => void;

const REPORTING_CONTROLLER = 'kube-proxy';

/** The Event client-go's recorder writes for `event` about Node `nodeName` at `now` (ms). */
export function nodeEvent(nodeName: string, event: NodeEvent, now: number, host = hostname()): EventsV1Event {
  // client-go names events <object>.<unix nanoseconds in hex>; ms precision keeps them unique enough here.
  const name = `${nodeName}.${(BigInt(now) * 1_000_000n).toString(16)}`;
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    // A cluster-scoped object's events go to "default", as client-go's.
    metadata: { name, namespace: 'default' },
    eventTime: new V1MicroTime(now),
    reportingController: REPORTING_CONTROLLER,
    reportingInstance: `${REPORTING_CONTROLLER}-${host}`,
    action: event.action,
    reason: event.reason,
    regarding: { apiVersion: 'v1', kind: 'Node', name: nodeName, namespace: '' },
    note: event.note ?? '',
    type: event.type,
  };
}

export function nodeEventRecorder(kubeConfig: KubeConfig, nodeName: string, logger: Logger): NodeEventRecorder {
  const events = kubeConfig.makeApiClient(EventsV1Api);
  let failedBefore = false;
  return (event) => {
    const body = nodeEvent(nodeName, event, Date.now());
    events.createNamespacedEvent({ namespace: 'default', body }).then(
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
