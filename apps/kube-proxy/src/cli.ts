#!/usr/bin/env -S node --max-semi-space-size=1
// The kube-proxy executable.
//
// The interpreter line is the one place that sets V8's heap options (the image's launcher runs
// this file, not `node` with flags of its own). 1 MiB semi-spaces instead of 16: a proxy's objects
// live long (tracked Services and endpoints) or die young in bursts (a list, a manifest, a sync's
// payload), and the large young generation kept 50-80 MiB of RSS committed at 10k Services
// (bench/daemon.ts) for no gain in start-up or sync time.

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
