import { mkdtemp, open, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestLogger, type TestLogger } from '@kube-proxy-ts/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RecordingHandler } from '@kube-proxy-ts/testing/apiserver';
import { startManifestSource } from './manifest.js';
import type { ManifestSourceOptions, Source } from './types.js';

function svc(name: string, clusterIP: string, extra = ''): string {
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo${extra} }
spec:
  clusterIP: ${clusterIP}
  ports: [{ name: http, port: 80, protocol: TCP }]
`;
}

function slice(name: string, service: string, ips: string[]): string {
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}, namespace: demo, labels: { kubernetes.io/service-name: ${service} } }
addressType: IPv4
endpoints: [${ips.map((ip) => `{ addresses: [${ip}], conditions: { ready: true } }`).join(', ')}]
ports: [{ name: http, port: 8080, protocol: TCP }]
`;
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('manifest source', () => {
  let dir: string;
  let handler: RecordingHandler;
  let logger: TestLogger;
  let source: Source | undefined;

  function start(path: string, options: Partial<ManifestSourceOptions> = {}): Source {
    source = startManifestSource({ path, handler, logger, debounceMs: 20, rescanIntervalMs: 0, settleMs: 30, ...options });
    return source;
  }

  const keys = (kind: 'Service' | 'EndpointSlice' | 'Node') => [...handler.objects[kind].keys()].sort();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpts-manifests-'));
    handler = new RecordingHandler();
    logger = createTestLogger();
  });

  afterEach(async () => {
    try {
      await source?.stop();
      source = undefined;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('loads a multi-document file, skips objects for other proxies and other nodes, and syncs all kinds', async () => {
    const file = join(dir, 'demo.yaml');
    await writeFile(
      file,
      [
        svc('web', '10.96.0.10'),
        slice('web-1', 'web', ['10.244.1.5', '10.244.1.6']),
        svc('elsewhere', '10.96.0.11', ', labels: { service.kubernetes.io/service-proxy-name: other }'),
        'apiVersion: v1\nkind: Node\nmetadata: { name: node-a, labels: { topology.kubernetes.io/zone: z1 } }\n',
        'apiVersion: v1\nkind: Node\nmetadata: { name: node-b }\n',
      ].join('---\n'),
    );
    await start(file, { nodeName: 'node-a' }).ready;
    expect(handler.synced).toEqual({ Service: 1, EndpointSlice: 1, Node: 1 });
    expect(keys('Service')).toEqual(['demo/web']);
    expect(keys('EndpointSlice')).toEqual(['demo/web-1']);
    expect(keys('Node')).toEqual(['node-a']);
    expect(handler.objects.EndpointSlice.get('demo/web-1')).toMatchObject({ addressType: 'IPv4', endpoints: [{ addresses: ['10.244.1.5'] }, { addresses: ['10.244.1.6'] }] });
    expect(handler.violations).toEqual([]);
  });

  it('reports the Node synced even when no Node is given', async () => {
    const file = join(dir, 'only-services.json');
    await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' }, spec: { clusterIP: '10.96.0.1' } }] }));
    await start(file).ready;
    expect(handler.synced).toEqual({ Service: 1, EndpointSlice: 1, Node: 1 });
    expect(keys('Service')).toEqual(['default/a']);
    expect(keys('Node')).toEqual([]);
  });

  it('hands over the union of the ServiceCIDRs before reporting synced, and follows edits', async () => {
    const file = join(dir, 'cidrs.yaml');
    const cidr = (name: string, cidrs: string) => `apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: { name: ${name} }\nspec: { cidrs: [${cidrs}] }\n`;
    await writeFile(file, [svc('web', '10.96.0.10'), cidr('kubernetes', '10.96.0.0/16'), cidr('extra', '10.100.0.0/16, 10.96.0.0/16')].join('---\n'));
    await start(file).ready;
    expect(handler.serviceCIDRs.at(-1)).toEqual(['10.100.0.0/16', '10.96.0.0/16']);

    await writeFile(`${file}.tmp`, [svc('web', '10.96.0.10'), cidr('kubernetes', '10.96.0.0/16')].join('---\n'));
    await rename(`${file}.tmp`, file);
    await waitFor('the ServiceCIDR to go', () => handler.serviceCIDRs.at(-1)?.length === 1);
    expect(handler.serviceCIDRs.at(-1)).toEqual(['10.96.0.0/16']);
    // The Service did not change, and was not reported again.
    expect(handler.calls.map((c) => `${c.op} ${c.kind} ${c.key}`)).toEqual(['add Service demo/web']);
  });

  it('reads a directory of YAML and JSON files; removing a file deletes its objects', async () => {
    await writeFile(join(dir, '10-services.yaml'), `${svc('web', '10.96.0.10')}---\n${svc('db', '10.96.0.20')}`);
    await writeFile(join(dir, '20-slices.json'), JSON.stringify({ apiVersion: 'v1', kind: 'EndpointSliceList', items: [{ apiVersion: 'discovery.k8s.io/v1', metadata: { name: 'db-1', namespace: 'demo' }, addressType: 'IPv4', endpoints: [] }] }));
    await writeFile(join(dir, 'notes.txt'), 'not a manifest');
    await start(dir).ready;
    expect(keys('Service')).toEqual(['demo/db', 'demo/web']);
    expect(keys('EndpointSlice')).toEqual(['demo/db-1']);

    const mark = handler.calls.length;
    await rm(join(dir, '20-slices.json'));
    await waitFor('the slice to go', () => handler.objects.EndpointSlice.size === 0);
    expect(handler.callsSince(mark).map((c) => `${c.op} ${c.kind} ${c.key}`)).toEqual(['delete EndpointSlice demo/db-1']);
    expect(handler.violations).toEqual([]);
  });

  it('turns an edit into updates carrying the previous object, and nothing for unchanged objects', async () => {
    const file = join(dir, 'demo.yaml');
    await writeFile(file, `${svc('web', '10.96.0.10')}---\n${svc('db', '10.96.0.20')}---\n${slice('web-1', 'web', ['10.244.1.5'])}`);
    await start(file).ready;
    const oldSlice = handler.objects.EndpointSlice.get('demo/web-1');
    const mark = handler.calls.length;

    // Written as editors and ConfigMap updates do: a new file renamed over the old one.
    await writeFile(`${file}.tmp`, `${svc('web', '10.96.0.10')}---\n${svc('cache', '10.96.0.30')}---\n${slice('web-1', 'web', ['10.244.1.5', '10.244.2.9'])}`);
    await rename(`${file}.tmp`, file);
    await waitFor('the edit', () => handler.calls.length - mark >= 3);
    await new Promise((r) => setTimeout(r, 60)); // and nothing more after it settles

    const calls = handler.callsSince(mark);
    expect(calls.map((c) => `${c.op} ${c.kind} ${c.key}`).sort()).toEqual(['add Service demo/cache', 'delete Service demo/db', 'update EndpointSlice demo/web-1']);
    const update = calls.find((c) => c.op === 'update');
    // The previous slice as delivered, less its endpoints (the trackers hold those).
    expect(update?.old?.metadata).toEqual(oldSlice?.metadata);
    expect((update?.old as { endpoints?: unknown }).endpoints).toBeUndefined();
    expect((update?.obj as { endpoints: unknown[] }).endpoints).toHaveLength(2);
    expect(handler.violations).toEqual([]);
    expect(logger.entries.some((e) => e.msg === 'manifests changed')).toBe(true);
  });

  it('logs and skips a bad document while the rest of the file applies', async () => {
    const file = join(dir, 'demo.yaml');
    await writeFile(file, `${svc('web', '10.96.0.10')}---\nkind: Service\nmetadata: { name: [oops\n---\n${svc('db', '10.96.0.20')}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: x, namespace: demo }\n`);
    await start(file).ready;
    expect(keys('Service')).toEqual(['demo/db', 'demo/web']);
    const warnings = logger.at('warn').filter((e) => String(e.msg).startsWith('skipping manifest document'));
    expect(warnings.map((w) => [w.fields.file, w.fields.document])).toEqual([
      [file, 2],
      [file, 4],
    ]);
    expect(warnings[1]?.msg).toBe('skipping manifest document: EndpointSlice x: missing addressType');
  });

  it('keeps the objects of a file that turns entirely invalid (caught mid-write) until it is usable again', async () => {
    const file = join(dir, 'demo.yaml');
    await writeFile(file, `${svc('web', '10.96.0.10')}---\n${slice('web-1', 'web', ['10.244.1.5'])}`);
    await start(file).ready;
    const mark = handler.calls.length;
    await writeFile(file, 'apiVersion: v1\nkind: Service\nmetadata: { name: [we');
    await waitFor('a warning', () => logger.at('warn').some((e) => e.msg === 'manifest file unusable; keeping the objects last read from it'));
    expect(handler.calls.length).toBe(mark);
    // An empty file is a valid "no objects".
    await writeFile(file, '');
    await waitFor('the objects to go', () => handler.objects.Service.size === 0 && handler.objects.EndpointSlice.size === 0);
    expect(handler.violations).toEqual([]);
  });

  it('does not repeat warnings for an unchanged file on every rescan', async () => {
    const file = join(dir, 'demo.yaml');
    await writeFile(file, `${svc('web', '10.96.0.10')}---\nkind: Service\n`);
    await start(file, { rescanIntervalMs: 20 }).ready;
    await new Promise((r) => setTimeout(r, 120));
    expect(logger.at('warn').filter((e) => String(e.msg).startsWith('skipping manifest document'))).toHaveLength(1);
    expect(keys('Service')).toEqual(['demo/web']);
  });

  it('keeps the last objects when a single manifest file disappears, and fails start-up on a missing path', async () => {
    const file = join(dir, 'demo.yaml');
    await writeFile(file, svc('web', '10.96.0.10'));
    await start(file, { rescanIntervalMs: 50 }).ready;
    await rm(file);
    await waitFor('a warning', () => logger.at('warn').some((e) => e.msg === 'manifest path unreadable; keeping the objects last read'));
    await new Promise((r) => setTimeout(r, 120)); // a few rescans: still the one warning
    expect(logger.at('warn').filter((e) => e.msg === 'manifest path unreadable; keeping the objects last read')).toHaveLength(1);
    expect(keys('Service')).toEqual(['demo/web']);

    // Coming back with a change is picked up.
    await writeFile(file, svc('web', '10.96.0.99'));
    await waitFor('the new clusterIP', () => (handler.objects.Service.get('demo/web') as { spec?: { clusterIP?: string } }).spec?.clusterIP === '10.96.0.99');

    const missing = startManifestSource({ path: join(dir, 'nope'), handler: new RecordingHandler(), logger });
    await expect(missing.ready).rejects.toThrow(/cannot read manifests at .*nope/);
    await missing.stop();
  });

  it('picks up changes by the periodic rescan when file events are not delivered', async () => {
    const file = join(dir, 'demo.yaml');
    await writeFile(file, svc('web', '10.96.0.10'));
    // A debounce far beyond the test: only the rescan can apply the change.
    await start(file, { debounceMs: 60_000, rescanIntervalMs: 50 }).ready;
    await writeFile(file, `${svc('web', '10.96.0.10')}---\n${svc('db', '10.96.0.20')}`);
    await waitFor('the rescan', () => handler.objects.Service.has('demo/db'));
    expect(handler.violations).toEqual([]);
  });

  describe('files caught while being written', () => {
    // Long enough that each step below happens well within it, even on a busy machine.
    const SETTLE_MS = 300;
    const KEEPING = 'manifest file unusable; keeping the objects last read from it';
    const ops = (from: number) => handler.callsSince(from).map((c) => `${c.op} ${c.kind} ${c.key}`);
    const clusterIP = (key: string) => (handler.objects.Service.get(key) as { spec?: { clusterIP?: string } } | undefined)?.spec?.clusterIP;

    /**
     * Waits until the source has read `file` in its current state (the state is then either held
     * back until it settles, or, without settling, already applied), so that the next write is
     * known to follow a read of this intermediate state.
     */
    function readBySource(file: string, state: { size: number } | 'absent', since: number): Promise<void> {
      const seen = () =>
        logger.at('debug').some((e) => e.msg === 'manifest file changed; waiting for it to settle' && e.fields.file === file && (state === 'absent' ? e.fields.absent === true : String(e.fields.version).startsWith(`${state.size}:`)));
      return waitFor(`the source to read ${file}`, () => seen() || handler.calls.length > since);
    }

    it('keeps the Services of a file truncated to 0 bytes, then applies its rewrite once settled', async () => {
      const file = join(dir, 'demo.yaml');
      await writeFile(file, `${svc('web', '10.96.0.10')}---\n${svc('db', '10.96.0.20')}---\n${slice('web-1', 'web', ['10.244.1.5'])}`);
      await start(file, { settleMs: SETTLE_MS }).ready;
      const mark = handler.calls.length;

      await truncate(file, 0); // what `>` does before writing
      await readBySource(file, { size: 0 }, mark);
      await writeFile(file, `${svc('web', '10.96.0.11')}---\n${svc('db', '10.96.0.20')}---\n${slice('web-1', 'web', ['10.244.1.5'])}`);
      await waitFor('the rewrite', () => clusterIP('demo/web') === '10.96.0.11');

      expect(ops(mark)).toEqual(['update Service demo/web']);
      expect(handler.violations).toEqual([]);
    });

    it('applies a partly written file only once it is complete, even when the part is valid YAML', async () => {
      const file = join(dir, 'demo.yaml');
      await writeFile(file, svc('web', '10.96.0.10'));
      await start(file, { settleMs: SETTLE_MS }).ready;
      const mark = handler.calls.length;

      const full = `${svc('web', '10.96.0.10')}---\n${svc('db', '10.96.0.20')}`;
      // Cut inside db's clusterIP: "clusterIP: 10.96.0" and no ports, still a valid Service.
      const cut = full.indexOf('10.96.0.20') + '10.96.0'.length;
      const fh = await open(file, 'w');
      try {
        await fh.write(full.slice(0, cut));
        await readBySource(file, { size: cut }, mark);
        await fh.write(full.slice(cut));
      } finally {
        await fh.close();
      }
      await waitFor('db', () => handler.objects.Service.has('demo/db'));
      await new Promise((r) => setTimeout(r, 50)); // nothing follows once it has settled

      expect(ops(mark)).toEqual(['add Service demo/db']);
      expect(clusterIP('demo/db')).toBe('10.96.0.20');
      expect(handler.violations).toEqual([]);
    });

    it('waits at start-up for a file that is still being written', async () => {
      const file = join(dir, 'demo.yaml');
      const full = `${svc('web', '10.96.0.10')}---\n${svc('db', '10.96.0.20')}`;
      const half = full.slice(0, full.indexOf('---'));
      await writeFile(file, half);
      const s = start(file, { settleMs: SETTLE_MS });
      await readBySource(file, { size: half.length }, 0);
      await writeFile(file, full);
      await s.ready;
      expect(ops(0)).toEqual(['add Service demo/web', 'add Service demo/db']);
      expect(logger.at('info').some((e) => e.msg === 'manifest files still changing; waiting for them to settle before the first sync')).toBe(true);
    });

    it('keeps the objects of a file renamed away and replaced by rename, as editors save', async () => {
      const file = join(dir, 'demo.yaml');
      await writeFile(file, `${svc('web', '10.96.0.10')}---\n${slice('web-1', 'web', ['10.244.1.5'])}`);
      await start(dir, { settleMs: SETTLE_MS }).ready;
      const mark = handler.calls.length;

      // A backup by rename leaves the path missing until the new version is renamed into place.
      await rename(file, `${file}~`);
      await readBySource(file, 'absent', mark);
      const temp = join(dir, '.demo.yaml.swp');
      await writeFile(temp, `${svc('web', '10.96.0.10')}---\n${slice('web-1', 'web', ['10.244.1.5', '10.244.1.6'])}`);
      await rename(temp, file);
      await waitFor('the new endpoints', () => (handler.objects.EndpointSlice.get('demo/web-1') as { endpoints: unknown[] }).endpoints.length === 2);

      expect(ops(mark)).toEqual(['update EndpointSlice demo/web-1']);
      expect(handler.violations).toEqual([]);
    });

    it('removes the objects of a file deleted from the directory once it stays deleted', async () => {
      await writeFile(join(dir, 'web.yaml'), svc('web', '10.96.0.10'));
      await writeFile(join(dir, 'db.yaml'), svc('db', '10.96.0.20'));
      await start(dir, { settleMs: SETTLE_MS }).ready;
      const mark = handler.calls.length;
      const deleted = Date.now();
      await rm(join(dir, 'db.yaml'));
      await waitFor('db to go', () => !handler.objects.Service.has('demo/db'));
      expect(Date.now() - deleted).toBeGreaterThanOrEqual(SETTLE_MS);
      expect(ops(mark)).toEqual(['delete Service demo/db']);
      expect(logger.at('info').some((e) => e.msg === 'manifest file removed' && e.fields.file === join(dir, 'db.yaml'))).toBe(true);
    });

    it('keeps the last good objects of a file that settles as invalid YAML, with one warning, until it is fixed', async () => {
      const file = join(dir, 'demo.yaml');
      await writeFile(file, `${svc('web', '10.96.0.10')}---\n${svc('db', '10.96.0.20')}`);
      await start(file, { rescanIntervalMs: 20 }).ready;
      const mark = handler.calls.length;

      await writeFile(file, `${svc('web', '10.96.0.11')}---\napiVersion: v1\nkind: Service\nmetadata: { name: [db\n`);
      await waitFor('the warning', () => logger.at('warn').some((e) => e.msg === KEEPING));
      await new Promise((r) => setTimeout(r, 150)); // several rescans of the same broken version
      const warnings = logger.at('warn');
      expect(warnings.map((w) => w.msg)).toEqual([KEEPING]);
      expect(warnings[0]?.fields).toMatchObject({ file, reason: expect.stringMatching(/^document 2: invalid YAML/) });
      expect(handler.calls.length).toBe(mark);

      await writeFile(file, `${svc('web', '10.96.0.11')}---\n${svc('db', '10.96.0.20')}`);
      await waitFor('the fix', () => clusterIP('demo/web') === '10.96.0.11');
      expect(ops(mark)).toEqual(['update Service demo/web']);
    });

    it('refuses a file over the size limit with a clear error and keeps its last good objects', async () => {
      const file = join(dir, 'demo.yaml');
      const many = (n: number) => Array.from({ length: n }, (_, i) => svc(`s${i}`, `10.96.1.${i}`)).join('---\n');
      await writeFile(file, many(2));
      await start(file, { maxFileBytes: 1000, rescanIntervalMs: 20 }).ready;
      const mark = handler.calls.length;

      const big = many(20);
      await writeFile(file, big);
      await waitFor('the warning', () => logger.at('warn').some((e) => e.msg === KEEPING));
      await new Promise((r) => setTimeout(r, 100));
      expect(logger.at('warn').map((w) => [w.msg, w.fields.reason])).toEqual([[KEEPING, `${Buffer.byteLength(big)} bytes, over the limit of 1000`]]);
      expect(handler.calls.length).toBe(mark);

      await writeFile(file, many(3));
      await waitFor('the third Service', () => handler.objects.Service.has('demo/s2'));
      expect(ops(mark)).toEqual(['add Service demo/s2']);

      await source?.stop();
      const oversized = startManifestSource({ path: file, handler: new RecordingHandler(), logger, settleMs: 0, maxFileBytes: 100 });
      await expect(oversized.ready).rejects.toThrow(`cannot read manifest ${file}: ${Buffer.byteLength(many(3))} bytes, over the limit of 100`);
      await oversized.stop();
    });
  });

  it('delivers nothing after stop', async () => {
    const file = join(dir, 'demo.yaml');
    await writeFile(file, svc('web', '10.96.0.10'));
    const s = start(file, { rescanIntervalMs: 20 });
    await s.ready;
    await s.stop();
    const mark = handler.calls.length;
    await writeFile(file, svc('db', '10.96.0.20'));
    await new Promise((r) => setTimeout(r, 100));
    expect(handler.calls.length).toBe(mark);
  });
});
