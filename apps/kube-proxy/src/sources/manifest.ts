// The --manifests source: Services, EndpointSlices, a Node and ServiceCIDRs read from YAML/JSON files, for
// running without a cluster. Files are re-read on file-system events (debounced) and on a
// periodic rescan, since events can be missed (editors renaming files, ConfigMap symlink swaps,
// inotify limits). Each reload is diffed against the previous one by kind/namespace/name.
//
// A file is written in steps (`>` truncates first, editors write in chunks or rename the old file
// away), and a step can be valid YAML that lacks the objects not yet written. So a changed file is
// used only once it has stayed the same (size, mtime and content) for the settle time; until then,
// and while a settled version is unusable, the file's last good objects stay in place.

import { createHash } from 'node:crypto';
import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { type FileHandle, open, readdir, stat } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { KubernetesObject, V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import { type ProxiedKind, endpointSliceHandler, isProxiedByUs, nodeHandler, objectKey, serviceCIDRHandler, serviceHandler } from './kinds.js';
import { type ManifestObjects, type ParsedManifest, parseManifest } from './manifest-parse.js';
import { ObjectDiff, type Remembering, instanceVersions } from './object-diff.js';
import { keptOf } from './typed.js';
import type { ManifestSourceOptions, Source } from './types.js';

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);
const DEFAULT_SETTLE_MS = 500;
const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;

/** One read of a file. `version` changes with its size, mtime or content. */
type FileRead =
  | { readonly state: 'absent' }
  | { readonly state: 'too-large'; readonly version: string; readonly size: number }
  | { readonly state: 'read'; readonly version: string; readonly hash: string; readonly text: string };

/** What the source knows of one file. */
interface FileState {
  /** The objects in use: from the last version that settled and could be used. */
  good?: { readonly hash: string; readonly objects: ParsedManifest };
  /** A version other than the good one, first read at `since`; used once it is unchanged for the settle time. */
  pending?: { readonly version: string; readonly since: number };
  /** A settled version that could not be used, already warned about. */
  refused?: string;
  /** The read error already warned about. */
  unreadable?: string;
  /** Size and mtime when last read: a periodic rescan reads the file again only when they moved. */
  stamp?: string;
}

/** Reads at most `limit` bytes, so that a file growing while it is read cannot exhaust memory. */
async function readAtMost(fh: FileHandle, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < limit) {
    const chunk = Buffer.allocUnsafe(Math.min(1 << 20, limit - total));
    const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
    if (bytesRead === 0) break;
    chunks.push(chunk.subarray(0, bytesRead));
    total += bytesRead;
  }
  return Buffer.concat(chunks, total);
}

async function readManifestFile(file: string, maxBytes: number): Promise<FileRead> {
  const fh = await open(file, 'r');
  try {
    const st = await fh.stat();
    const stamp = `${st.size}:${st.mtimeMs}`;
    if (st.size > maxBytes) return { state: 'too-large', version: `${stamp}:`, size: st.size };
    const content = await readAtMost(fh, maxBytes + 1);
    if (content.length > maxBytes) return { state: 'too-large', version: `${stamp}:`, size: content.length };
    const hash = createHash('sha256').update(content).digest('hex');
    return { state: 'read', version: `${stamp}:${hash}`, hash, text: content.toString('utf8') };
  } finally {
    await fh.close();
  }
}

/**
 * Starts reading `path`. `ready` rejects when the first read fails (missing path, unreadable or
 * oversized file): starting with an empty view would wipe the data plane; it resolves once every
 * file has settled. Later, a changed file applies once it has settled; until then, and when it
 * settles unusable (invalid YAML, no valid document, over maxFileBytes, unreadable), its last good
 * objects stay, with one warning per version. A bad object among good ones is skipped; an empty
 * file is "no objects"; a file removed from a directory removes its objects, and a single-file
 * path that is gone keeps them.
 */
export function startManifestSource(options: ManifestSourceOptions): Source {
  const { path, handler } = options;
  const debounceMs = options.debounceMs ?? 100;
  const rescanIntervalMs = options.rescanIntervalMs ?? 5000;
  const settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  if (!(settleMs >= 0)) throw new RangeError(`manifest settleMs must be 0 or more, got ${settleMs}`);
  if (!(maxFileBytes > 0)) throw new RangeError(`manifest maxFileBytes must be more than 0, got ${maxFileBytes}`);
  const logger = options.logger.child({ component: 'manifest-source', path });

  // Files carry no resourceVersion; a document that did not change gives the same objects again.
  const version = instanceVersions();
  const byInstance = <T extends KubernetesObject>(kind: ProxiedKind): Remembering<T> => {
    const keep = keptOf(kind) as ((obj: T) => T) | undefined;
    return { version, ...(keep ? { keep } : {}) };
  };
  const services = new ObjectDiff<V1Service>('Service', serviceHandler(handler), byInstance('Service'), logger);
  const slices = new ObjectDiff<V1EndpointSlice>('EndpointSlice', endpointSliceHandler(handler), byInstance('EndpointSlice'), logger);
  const nodes = new ObjectDiff<V1Node>('Node', nodeHandler(handler), byInstance('Node'), logger);
  const serviceCIDRs = new ObjectDiff<V1ServiceCIDR>('ServiceCIDR', serviceCIDRHandler(handler), byInstance('ServiceCIDR'), logger);

  const files = new Map<string, FileState>();
  let pathUnreadable = false;
  let stopped = false;
  let watcher: FSWatcher | undefined;
  let debounceTimer: NodeJS.Timeout | undefined;
  let settleTimer: NodeJS.Timeout | undefined;
  let rescanTimer: NodeJS.Timeout | undefined;
  let loading: Promise<void> | undefined;
  let reloadAgain = false;
  /** Files named by file-system events and not read since; 'all' when any file may have changed. */
  let dirty: Set<string> | 'all' = new Set();
  /** A file's objects changed during the current reload. */
  let viewChanged = false;

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

  /**
   * Reads the files that may have changed: those in `changed` (named by file-system events), new
   * ones, and ones still settling; with `changed` unset (start-up, a periodic rescan, an event
   * without a name), every file whose size or mtime moved. Returns how long until the next changed
   * file may have settled, if any.
   */
  async function readFiles(first: boolean, changed?: ReadonlySet<string>): Promise<number | undefined> {
    let listing: Awaited<ReturnType<typeof listFiles>>;
    try {
      listing = await listFiles();
    } catch (err) {
      if (first) throw new Error(`cannot read manifests at ${path}: ${(err as Error).message}`, { cause: err });
      if (!pathUnreadable) logger.warn({ err: (err as Error).message }, 'manifest path unreadable; keeping the objects last read');
      pathUnreadable = true;
      return undefined;
    }
    pathUnreadable = false;
    const listed = new Set(listing.files);
    let wait: number | undefined;
    // Files known from earlier reads and now missing from the directory are read as absent.
    for (const file of [...new Set([...listing.files, ...files.keys()])]) {
      let read: FileRead = { state: 'absent' };
      if (listed.has(file)) {
        if (!first && !(await mayHaveChanged(file, changed))) continue;
        try {
          read = await readManifestFile(file, maxFileBytes);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          // Removed between the listing and the read: absent, unless it is the one file we were given.
          if (!(code === 'ENOENT' && listing.isDirectory)) {
            if (first) throw new Error(`cannot read manifest ${file}: ${(err as Error).message}`, { cause: err });
            warnUnreadable(file, (err as Error).message);
            continue;
          }
        }
      }
      const left = observe(file, read, Date.now(), first);
      if (left !== undefined) wait = Math.min(wait ?? left, left);
    }
    return wait;
  }

  async function mayHaveChanged(file: string, changed: ReadonlySet<string> | undefined): Promise<boolean> {
    const st = files.get(file);
    if (st?.stamp === undefined || st.pending || st.unreadable !== undefined) return true;
    if (changed) return changed.has(file);
    const now = await stat(file).catch(() => undefined);
    return now === undefined || `${now.size}:${now.mtimeMs}` !== st.stamp;
  }

  function warnUnreadable(file: string, message: string): void {
    const st = files.get(file) ?? {};
    files.set(file, st);
    if (st.unreadable === message) return;
    st.unreadable = message;
    logger.warn({ file, err: message }, 'manifest file unreadable; keeping the objects last read from it');
  }

  /** Takes one read of a file into account; returns the time left before its new version may be used. */
  function observe(file: string, read: FileRead, now: number, first: boolean): number | undefined {
    const st = files.get(file) ?? {};
    files.set(file, st);
    st.unreadable = undefined;
    st.stamp = read.state === 'absent' ? undefined : read.version.slice(0, read.version.lastIndexOf(':'));
    if (read.state === 'read' && read.hash === st.good?.hash) {
      // Back to (or still at) what is in use: nothing to apply, and nothing to warn about again.
      st.pending = undefined;
      st.refused = undefined;
      return undefined;
    }
    const version = read.state === 'absent' ? 'absent' : read.version;
    if (version === st.refused) return undefined;
    if (st.pending?.version !== version) {
      st.pending = { version, since: now };
      if (settleMs > 0) {
        logger.debug({ file, ...(read.state === 'absent' ? { absent: true } : { version }) }, 'manifest file changed; waiting for it to settle');
        return settleMs;
      }
    } else {
      const left = st.pending.since + settleMs - now;
      if (left > 0) return left;
    }
    st.pending = undefined;
    use(file, st, read, first);
    return undefined;
  }

  /** A version that stayed unchanged for the settle time: its objects replace the file's. */
  function use(file: string, st: FileState, read: FileRead, first: boolean): void {
    if (read.state === 'absent') {
      files.delete(file);
      if (st.good) {
        viewChanged = true;
        logger.info({ file }, 'manifest file removed');
      }
      return;
    }
    if (read.state === 'too-large') {
      const reason = `${read.size} bytes, over the limit of ${maxFileBytes}`;
      if (first) throw new Error(`cannot read manifest ${file}: ${reason}`);
      refuse(file, st, read.version, reason);
      return;
    }
    // Documents unchanged since the good version are not read again (an edit costs what it touched).
    const parsed = parseManifest(read.text, st.good?.objects);
    const usable = parsed.services.length + parsed.endpointSlices.length + parsed.nodes.length + parsed.serviceCIDRs.length + Object.keys(parsed.ignored).length;
    // Invalid YAML, or nothing valid at all, reads as a broken edit rather than an intent to drop the
    // file's Services. With no good version yet (start-up, a new file) the valid documents apply.
    const broken = parsed.problems.find((p) => p.invalidYaml) ?? (usable === 0 ? parsed.problems[0] : undefined);
    if (st.good && broken) {
      refuse(file, st, read.version, `document ${broken.document}: ${broken.message}`);
      return;
    }
    for (const p of parsed.problems) {
      logger.warn({ file, document: p.document, ...(p.item !== undefined ? { item: p.item } : {}) }, `skipping manifest document: ${p.message}`);
    }
    if (Object.keys(parsed.ignored).length > 0) logger.debug({ file, kinds: parsed.ignored }, 'ignoring kinds a proxy does not use');
    st.good = { hash: read.hash, objects: parsed };
    viewChanged = true;
    st.refused = undefined;
  }

  function refuse(file: string, st: FileState, version: string, reason: string): void {
    st.refused = version;
    logger.warn({ file, reason }, st.good ? 'manifest file unusable; keeping the objects last read from it' : 'manifest file unusable; ignoring it');
  }

  /** All files merged into one view per kind; a later file (in name order) wins a duplicate. */
  function merged(): { services: V1Service[]; slices: V1EndpointSlice[]; nodes: V1Node[]; serviceCIDRs: V1ServiceCIDR[] } {
    const pick = <T extends KubernetesObject>(kind: string, select: (m: ManifestObjects) => T[], keep: (o: T) => boolean): T[] => {
      const byKey = new Map<string, T>();
      for (const file of [...files.keys()].sort()) {
        const objects = files.get(file)?.good?.objects;
        if (objects === undefined) continue;
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

  async function reload(first: boolean, named?: ReadonlySet<string>): Promise<void> {
    viewChanged = false;
    for (let round = 1; ; round++) {
      const wait = await readFiles(first, round === 1 ? named : undefined);
      if (stopped) return;
      if (wait === undefined) break;
      if (!first) {
        // Apply what has settled now; read again when the rest may have.
        if (settleTimer) clearTimeout(settleTimer);
        settleTimer = setTimeout(() => {
          settleTimer = undefined;
          // Only the files still settling (and new ones) are read again.
          requestReload(new Set());
        }, wait);
        break;
      }
      // Start-up hands over nothing before every file has settled.
      if (round === 2) logger.info({ settleMs }, 'manifest files still changing; waiting for them to settle before the first sync');
      await delay(wait);
    }
    // No file's objects changed: the view is what the handler has.
    if (!first && !viewChanged) return;
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

  /** Reload soon; `changed` names the files that may have changed (unset: any may have). */
  function requestReload(changed?: ReadonlySet<string>): void {
    if (stopped) return;
    if (changed === undefined || dirty === 'all') dirty = 'all';
    else for (const f of changed) dirty.add(f);
    if (loading) {
      reloadAgain = true;
      return;
    }
    const files = dirty === 'all' ? undefined : dirty;
    dirty = new Set();
    loading = reload(false, files)
      .catch((err: unknown) => logger.error({ err }, 'manifest reload failed'))
      .finally(() => {
        loading = undefined;
        if (reloadAgain) {
          reloadAgain = false;
          requestReload(new Set());
        }
      });
  }

  /**
   * An event naming one of the manifest files marks that file alone; any other (a ConfigMap's
   * "..data" swap, an event without a name) has every file checked, by size and mtime.
   */
  function onFsEvent(dir: string, isDirectory: boolean, name: string | null): void {
    if (stopped) return;
    const file = name === null ? undefined : join(dir, name);
    const ours = file !== undefined && (isDirectory ? MANIFEST_EXTENSIONS.has(extname(file).toLowerCase()) && !name?.startsWith('.') : file === join(path));
    if (!ours || dirty === 'all') dirty = 'all';
    else dirty.add(isDirectory ? file : path);
    if (debounceTimer) clearTimeout(debounceTimer);
    debounceTimer = setTimeout(() => {
      debounceTimer = undefined;
      requestReload(new Set());
    }, debounceMs);
  }

  async function startWatching(): Promise<void> {
    if (stopped || watcher) return;
    // Watch the directory even for a single file: editors and ConfigMaps replace files by rename,
    // which a watch on the file itself would not survive.
    const isDirectory = (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
    const dir = isDirectory ? path : dirname(path);
    try {
      const w = fsWatch(dir, (_event, name) => onFsEvent(dir, isDirectory, name));
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
      if (settleTimer) clearTimeout(settleTimer);
      if (rescanTimer) clearInterval(rescanTimer);
      watcher?.close();
      watcher = undefined;
      await (loading ?? Promise.resolve()).catch(() => undefined);
      await ready.catch(() => undefined);
    },
  };
}
