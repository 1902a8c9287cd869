// What a backend needs from the machine (Backend.requirements), checked before it starts so that a
// missing tool or kernel feature gives one clear message instead of a failed sync loop.

import { existsSync } from 'node:fs';
import type { Backend, CommandRunner } from '@kube-proxy-ts/core';

export interface RequirementOptions {
  readonly runner: CommandRunner;
  /** For tests: whether a path exists. */
  readonly exists?: (path: string) => boolean;
}

/** Problems that prevent `backend` from running here; empty when it can run. */
export async function missingRequirements(backend: Pick<Backend, 'name' | 'requirements'>, opts: RequirementOptions): Promise<string[]> {
  const problems: string[] = [];
  const exists = opts.exists ?? existsSync;
  for (const req of backend.requirements ?? []) {
    if ('path' in req) {
      if (!exists(req.path)) problems.push(`${req.path} is missing: ${req.why}`);
      continue;
    }
    try {
      await opts.runner.run(req.tool, req.args, { timeoutMs: 10_000 });
    } catch {
      problems.push(`${req.tool} is not installed or not on PATH (the ${backend.name} mode uses it: it ${req.why})`);
    }
  }
  return problems;
}
