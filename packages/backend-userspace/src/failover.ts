// Connecting to a service: try an endpoint, and when the connect fails or times out move on to
// the next one with a longer timeout, so that one dead pod does not fail the client.

import { ENDPOINT_DIAL_TIMEOUTS_MS } from './layout.js';

export type DialResult<E, C> =
  | { readonly kind: 'connected'; readonly endpoint: E; readonly conn: C; readonly failures: number }
  | { readonly kind: 'no-endpoints'; readonly failures: number }
  | { readonly kind: 'failed'; readonly error: Error; readonly failures: number }
  | { readonly kind: 'cancelled'; readonly failures: number };

export interface DialWithFailoverOptions<E, C> {
  /** Chooses an endpoint; `resetAffinity` is true after a failure. */
  readonly pick: (resetAffinity: boolean) => E | undefined;
  /** Connects to one endpoint; rejects on error or when `timeoutMs` passes. */
  readonly dial: (endpoint: E, timeoutMs: number) => Promise<C>;
  /** Called for every failed attempt (metrics, logs). */
  readonly onFailure?: (endpoint: E, error: Error) => void;
  /** True when the client went away: stop trying. */
  readonly cancelled?: () => boolean;
  readonly timeouts?: readonly number[];
}

export async function dialWithFailover<E, C>(options: DialWithFailoverOptions<E, C>): Promise<DialResult<E, C>> {
  const timeouts = options.timeouts ?? ENDPOINT_DIAL_TIMEOUTS_MS;
  let failures = 0;
  let lastError: Error | undefined;
  for (const timeoutMs of timeouts) {
    if (options.cancelled?.()) return { kind: 'cancelled', failures };
    const endpoint = options.pick(failures > 0);
    if (endpoint === undefined) {
      return lastError ? { kind: 'failed', error: lastError, failures } : { kind: 'no-endpoints', failures };
    }
    try {
      const conn = await options.dial(endpoint, timeoutMs);
      return { kind: 'connected', endpoint, conn, failures };
    } catch (err) {
      failures++;
      lastError = err instanceof Error ? err : new Error(String(err));
      options.onFailure?.(endpoint, lastError);
    }
  }
  return { kind: 'failed', error: lastError ?? new Error('no connect attempt was made'), failures };
}
