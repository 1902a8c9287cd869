// The --manifests source: Services, EndpointSlices, a Node and ServiceCIDRs read from YAML/JSON files, for
// running without a cluster. Files are re-read on file-system events (debounced) and on a
// periodic rescan, since events can be missed (editors renaming files, ConfigMap symlink swaps,
// inotify limits). Each reload is diffed against the previous one by kind/namespace/name.

import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { KubernetesObject, V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { endpointSliceHandler, isProxiedByUs, nodeHandler, objectKey, serviceCIDRHandler, serviceHandler } from './kinds.js';
import { type ManifestObjects, parseManifest } from './manifest-parse.js';
import { ObjectDiff } from './object-diff.js';
import type { ManifestSourceOptions, Source } from './types.js';

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/**
 * Starts reading `path`. `ready` rejects when the first read fails (missing path, unreadable
 * file): starting with an empty view would wipe the data plane. Later failures (unreadable file,
 * a file with no valid document left, a single-file path gone) keep the last good objects of the
 * affected file; a bad document among good ones is skipped; a file removed from a directory
 * removes its objects.
 */
export function startManifestSource(options: ManifestSourceOptions): Source {
  const { path, handler } = options;
  const debounceMs = options.debounceMs ?? 100;
  const rescanIntervalMs = options.rescanIntervalMs ?? 5000;
  const logger = options.logger.child({ component: 'manifest-source', path });

  const services = new ObjectDiff<V1Service>('Service', serviceHandler(handler), isDeepStrictEqual, logger);
  const slices = new ObjectDiff<V1EndpointSlice>('EndpointSlice', endpointSliceHandler(handler), isDeepStrictEqual, logger);
  const nodes = new ObjectDiff<V1Node>('Node', nodeHandler(handler), isDeepStrictEqual, logger);
  const serviceCIDRs = new ObjectDiff<V1ServiceCIDR>('ServiceCIDR', serviceCIDRHandler(handler), isDeepStrictEqual, logger);

  /** Last successfully read content per file, kept when a later read fails. */
  const files = new Map<string, { text: string; objects: ManifestObjects }>();
  let stopped = false;
  let watcher: FSWatcher | undefined;
  let debounceTimer: NodeJS.Timeout | undefined;
  let rescanTimer: NodeJS.Timeout | undefined;
  let loading: Promise<void> | undefined;
  let reloadAgain = false;

  async function listFiles(): Promise<{ files: string[]; isDirectory: boolean }> {
    const st = await stat(path);
    if (!st.isDirectory()) return { files: [path], isDirectory: false };
    const names = (await readdir(path)).filter((n) => !n.startsWith('.') && MANIFEST_EXTENSIONS.has(extname(n).toLowerCase())).sort();
    const found: string[] = [];
    for (const name of names) {
      const full = join(path, name);
      // stat follows symlinks, as ConfigMap volumes use them.
      const fst = await stat(full).catch(() => undefined);
      if (fst?.isFile()) found.push(full);
    }
    return { files: found, isDirectory: true };
  }

  async function readFiles(first: boolean): Promise<void> {
    let listing: Awaited<ReturnType<typeof listFiles>>;
    try {
      listing = await listFiles();
    } catch (err) {
      if (first) throw new Error(`cannot read manifests at ${path}: ${(err as Error).message}`, { cause: err });
      logger.warn({ err: (err as Error).message }, 'manifest path unreadable; keeping the objects last read');
      return;
    }
    const present = new Set(listing.files);
    for (const known of [...files.keys()]) {
      if (!present.has(known)) {
        files.delete(known);
        logger.info({ file: known }, 'manifest file removed');
      }
    }
    for (const file of listing.files) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' && listing.isDirectory) {
          files.delete(file); // removed between the listing and the read
          continue;
        }
        if (first) throw new Error(`cannot read manifest ${file}: ${(err as Error).message}`, { cause: err });
        logger.warn({ file, err: (err as Error).message }, 'manifest file unreadable; keeping the objects last read from it');
        continue;
      }
      // Unchanged since the last read (the periodic rescan): its problems were logged already.
      if (files.get(file)?.text === text) continue;
      const parsed = parseManifest(text);
      for (const p of parsed.problems) {
        logger.warn({ file, document: p.document, ...(p.item !== undefined ? { item: p.item } : {}) }, `skipping manifest document: ${p.message}`);
      }
      if (Object.keys(parsed.ignored).length > 0) logger.debug({ file, kinds: parsed.ignored }, 'ignoring kinds a proxy does not use');
      const previous = files.get(file);
      const usable = parsed.services.length + parsed.endpointSlices.length + parsed.nodes.length + parsed.serviceCIDRs.length + Object.keys(parsed.ignored).length;
      if (previous && usable === 0 && parsed.problems.length > 0) {
        // Nothing in the file is valid any more: most likely caught mid-write. Dropping all its
        // objects would cut traffic to every Service in it; keep them until a usable version.
        logger.warn({ file }, 'no valid document in manifest file; keeping the objects last read from it');
        files.set(file, { text, objects: previous.objects });
        continue;
      }
      files.set(file, { text, objects: parsed });
    }
  }

  /** All files merged into one view per kind; a later file (in name order) wins a duplicate. */
  function merged(): { services: V1Service[]; slices: V1EndpointSlice[]; nodes: V1Node[]; serviceCIDRs: V1ServiceCIDR[] } {
    const pick = <T extends KubernetesObject>(kind: string, select: (m: ManifestObjects) => T[], keep: (o: T) => boolean): T[] => {
      const byKey = new Map<string, T>();
      for (const [file, { objects }] of files) {
        for (const obj of select(objects)) {
          if (!keep(obj)) continue;
          const key = objectKey(obj);
          if (byKey.has(key)) logger.warn({ file, kind, key }, 'object defined more than once; the last definition wins');
          byKey.set(key, obj);
        }
      }
      return [...byKey.values()];
    };
    const proxied = (o: KubernetesObject) => {
      if (isProxiedByUs(o)) return true;
      logger.debug({ kind: o.kind, key: objectKey(o) }, 'skipping object labelled for another proxy or headless');
      return false;
    };
    const thisNode = (n: V1Node) => {
      if (options.nodeName === undefined || n.metadata?.name === options.nodeName) return true;
      logger.debug({ node: n.metadata?.name, nodeName: options.nodeName }, 'skipping Node that is not this node');
      return false;
    };
    return {
      services: pick('Service', (m) => m.services, proxied),
      slices: pick('EndpointSlice', (m) => m.endpointSlices, proxied),
      nodes: pick('Node', (m) => m.nodes, thisNode),
      serviceCIDRs: pick('ServiceCIDR', (m) => m.serviceCIDRs, () => true),
    };
  }

  async function reload(first: boolean): Promise<void> {
    await readFiles(first);
    if (stopped) return;
    const view = merged();
    const s = services.replaceAll(view.services);
    const e = slices.replaceAll(view.slices);
    const n = nodes.replaceAll(view.nodes);
    const c = serviceCIDRs.replaceAll(view.serviceCIDRs);
    const changed = [s, e, n, c].some((d) => d.added + d.updated + d.deleted > 0);
    if (first || changed) {
      logger.info({ services: s, endpointSlices: e, nodes: n, serviceCIDRs: c }, first ? 'manifests loaded' : 'manifests changed');
    }
  }

  function requestReload(): void {
    if (stopped) return;
    if (loading) {
      reloadAgain = true;
      return;
    }
    loading = reload(false)
      .catch((err: unknown) => logger.error({ err }, 'manifest reload failed'))
      .finally(() => {
        loading = undefined;
        if (reloadAgain) {
          reloadAgain = false;
          requestReload();
        }
      });
  }

  function onFsEvent(): void {
    if (stopped) return;
    if (debounceTimer) clearTimeout(debounceTimer);
    debounceTimer = setTimeout(() => {
      debounceTimer = undefined;
      requestReload();
    }, debounceMs);
  }

  async function startWatching(): Promise<void> {
    if (stopped || watcher) return;
    // Watch the directory even for a single file: editors and ConfigMaps replace files by rename,
    // which a watch on the file itself would not survive.
    const isDirectory = (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
    const dir = isDirectory ? path : dirname(path);
    try {
      const w = fsWatch(dir, () => onFsEvent());
      w.on('error', (err) => {
        logger.warn({ err: err.message, dir }, 'file watch failed; relying on the periodic rescan');
        w.close();
        if (watcher === w) watcher = undefined;
      });
      watcher = w;
    } catch (err) {
      logger.warn({ err: (err as Error).message, dir }, 'cannot watch manifests; relying on the periodic rescan');
    }
  }

  const ready = (async () => {
    loading = reload(true);
    try {
      await loading;
    } finally {
      loading = undefined;
    }
    if (stopped) return;
    services.synced();
    slices.synced();
    nodes.synced();
    await startWatching();
    if (rescanIntervalMs > 0 && !stopped) {
      rescanTimer = setInterval(() => {
        void startWatching();
        requestReload();
      }, rescanIntervalMs);
    }
    logger.debug({ file: basename(path), rescanIntervalMs }, 'watching manifests');
  })();
  // The caller sees a failed first read through `ready`; keep the process from reporting it as unhandled twice.
  ready.catch(() => undefined);

  return {
    ready,
    async stop() {
      stopped = true;
      if (debounceTimer) clearTimeout(debounceTimer);
      if (rescanTimer) clearInterval(rescanTimer);
      watcher?.close();
      watcher = undefined;
      await (loading ?? Promise.resolve()).catch(() => undefined);
      await ready.catch(() => undefined);
    },
  };
}
