// Upstream exits when its --config file changes, so that the DaemonSet restarts it with the new
// configuration. The file is polled by stat (which follows the symlinks of ConfigMap volumes,
// whose atomic swaps inotify on the old inode would miss) and its content compared.

import { readFileSync, unwatchFile, watchFile } from 'node:fs';

export interface ConfigWatch {
  close(): void;
}

export function watchConfigFile(path: string, onChange: (why: string) => void, intervalMs = 2000): ConfigWatch {
  const read = (): string | undefined => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  };
  const initial = read();
  let fired = false;
  const listener = () => {
    if (fired) return;
    const now = read();
    if (now === initial) return;
    fired = true;
    onChange(now === undefined ? `configuration file ${path} was removed` : `content of the configuration file ${path} was updated`);
  };
  watchFile(path, { interval: intervalMs, persistent: false }, listener);
  return { close: () => unwatchFile(path, listener) };
}
