#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 node --max-semi-space-size=1 --expose-gc
// The kube-proxy executable.
//
// The interpreter line is the one place that sets the process's memory options (the image's
// launcher runs this file, not `node` with flags of its own); bench/README.md has the figures:
// - 1 MiB semi-spaces instead of 16: a proxy's objects live long (tracked Services and
//   endpoints) or die young in bursts (a list, a manifest, a sync's payload), and the large young
//   generation kept 50-80 MiB of RSS committed at 10k Services for no gain in speed.
// - glibc's malloc returns large blocks (payloads, HTTP bodies) to the system when freed; by
//   default it raises that threshold after the first such block and kept 20 MiB of later ones.
// - gc() for the two collections of main.ts: once the initial lists are in (when the old
//   generation's growth is tightened), and once the first sync is done.

// Log lines name the TypeScript file and line of their call site: source maps must be on before
// the modules load, hence the dynamic import.
process.setSourceMapsEnabled(true);
const { main } = await import('./main.js');

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`kube-proxy: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
