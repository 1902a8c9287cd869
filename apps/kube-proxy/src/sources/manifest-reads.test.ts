// What the manifest source reads from disk after a change: only the file that changed.

import { mkdtemp, rm, writeFile, utimes } from 'node:fs/promises';
import type { V1Service } from '@kubernetes/client-node';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestLogger } from '@kube-proxy-ts/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RecordingHandler } from '@kube-proxy-ts/testing/apiserver';
import { startManifestSource } from './manifest.js';
import type { Source } from './types.js';

const opened = vi.hoisted(() => [] as string[]);
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...fs,
    open: (path: string, ...rest: unknown[]) => {
      opened.push(String(path));
      return (fs.open as (...a: unknown[]) => ReturnType<typeof fs.open>)(path, ...rest);
    },
  };
});

function service(i: number, port = 80): string {
  return `apiVersion: v1\nkind: Service\nmetadata:\n  name: svc${i}\n  namespace: demo\nspec:\n  clusterIP: 10.96.0.${i}\n  ports:\n  - name: http\n    port: ${port}\n`;
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('manifest source reads', () => {
  let dir: string | undefined;
  let source: Source | undefined;
  afterEach(async () => {
    await source?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reads again only the file an event names, and on a rescan only files whose size or mtime moved', async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpts-manifest-reads-'));
    const files = Array.from({ length: 20 }, (_, i) => join(dir as string, `svc-${String(i).padStart(2, '0')}.yaml`));
    await Promise.all(files.map((f, i) => writeFile(f, service(i + 1))));
    const handler = new RecordingHandler();
    source = startManifestSource({ path: dir, handler, logger: createTestLogger(), debounceMs: 20, settleMs: 30, rescanIntervalMs: 0 });
    await source.ready;
    expect(handler.objects.Service.size).toBe(20);

    opened.length = 0;
    const updates = () => handler.calls.filter((c) => c.op === 'update').length;
    await writeFile(files[7] as string, service(8, 8080));
    await waitFor('the edit to arrive', () => updates() === 1);
    expect((handler.objects.Service.get('demo/svc8') as V1Service | undefined)?.spec?.ports?.[0]?.port).toBe(8080);
    expect(new Set(opened)).toEqual(new Set([files[7]]));

    // A periodic rescan (every file checked) opens none of the unchanged ones.
    await source.stop();
    opened.length = 0;
    source = startManifestSource({ path: dir, handler: new RecordingHandler(), logger: createTestLogger(), debounceMs: 20, settleMs: 30, rescanIntervalMs: 50 });
    await source.ready;
    // Start-up reads each file twice: once, and again once it has settled.
    const atStart = opened.length;
    const later = new Date(Date.now() + 5000);
    await utimes(files[3] as string, later, later);
    await waitFor('the touched file to be read', () => opened.length > atStart);
    await new Promise((r) => setTimeout(r, 200));
    expect(new Set(opened.slice(atStart))).toEqual(new Set([files[3]]));
  });
});
