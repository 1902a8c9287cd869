// A kubeconfig file pointing at a plain-HTTP API server, as the daemon's --kubeconfig reads it.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';

/** Writes `<dir>/kubeconfig` for `server` (http://host:port) and returns its path. */
export async function writeKubeconfig(dir: string, server: string, name = 'test'): Promise<string> {
  const path = join(dir, 'kubeconfig');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server, 'insecure-skip-tls-verify': true } }],
    users: [{ name, user: { token: 'test-token' } }],
    contexts: [{ name, context: { cluster: name, user: name } }],
    'current-context': name,
  };
  await writeFile(path, stringify(config), { mode: 0o600 });
  return path;
}
