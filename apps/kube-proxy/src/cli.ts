#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 node --max-semi-space-size=1 --heap-growing-percent=10
// The kube-proxy executable.
//
// The interpreter line is the one place that sets the process's memory options (the image's
// launcher runs this file, not `node` with flags of its own); bench/README.md has the figures:
// - 1 MiB semi-spaces instead of 16: a proxy's objects live long (tracked Services and
//   endpoints) or die young in bursts (a list, a manifest, a sync's payload), and the large young
//   generation kept 50-80 MiB of RSS committed at 10k Services for no gain in speed.
// - The old generation grows by 10% over what survived a collection, not V8's up to 4x: a sync
//   at 10k Services leaves tens of MiB of garbage that V8 would otherwise keep mapped until the
//   process has been idle a while (236-248 against 171 MiB right after the first sync, for about
//   0.5 s more of start-up).
// - glibc's malloc returns large blocks (payloads, HTTP bodies) to the system when freed; by
//   default it raises that threshold after the first such block and keeps later ones (20 MiB).

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
