#!/usr/bin/env node
// The kube-proxy executable.

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
