// RecordingBackend: a Backend that programs nothing and records what it was asked to do, for
// tests of whatever drives backends (the daemon, a mode loaded by package name).

import type { Backend, BackendContext, BackendFactory, ChangeSet, IPFamily, ProxyState, SyncResult } from '@kube-proxy-ts/core';

export class RecordingBackend implements Backend {
  readonly name = 'recording';
  ctx: BackendContext | undefined;
  readonly syncs: Array<{ state: ProxyState; changes: ChangeSet }> = [];
  /** While true, every sync reports failure (the changes must come back on the retry). */
  fail = false;
  /** Syncs that reported success. */
  oks = 0;
  cleaned = 0;
  stopped = 0;

  constructor(readonly family: IPFamily) {}

  async start(ctx: BackendContext): Promise<void> {
    this.ctx = ctx;
  }

  async sync(state: ProxyState, changes: ChangeSet): Promise<SyncResult> {
    this.syncs.push({ state, changes });
    if (this.fail) return { ok: false, full: true, error: new Error('the kernel refused a rule') };
    this.oks++;
    return { ok: true, full: this.syncs.length === 1, stats: { rules: state.services.size } };
  }

  async cleanup(ctx: BackendContext): Promise<void> {
    this.ctx ??= ctx;
    this.cleaned++;
  }

  async stop(): Promise<void> {
    this.stopped++;
  }
}

/** A BackendFactory making RecordingBackends, and the list of those it made, in order. */
export function recordingBackends(): { factory: BackendFactory; backends: RecordingBackend[] } {
  const backends: RecordingBackend[] = [];
  const factory: BackendFactory = ({ ipFamily }) => {
    const b = new RecordingBackend(ipFamily);
    backends.push(b);
    return b;
  };
  return { factory, backends };
}
