// testContext(): a BackendContext for unit tests, made of fakes that record what happened.

import { Registry } from 'prom-client';
import type { BackendContext, Clock, CommandRunner, Logger, NodeInfo } from '@kube-proxy-ts/core';
import { createRecordingRunner, type RecordingRunner } from './recording-runner.js';
import { createFakeClock, type FakeClock } from './fake-clock.js';
import { createTestLogger, type TestLogger } from './test-logger.js';
import { nodeInfo } from './builders/node.js';

export interface TestContextOverrides<R extends CommandRunner, C extends Clock, L extends Logger> {
  runner?: R;
  clock?: C;
  logger?: L;
  metrics?: Registry;
  /** Merged over nodeInfo()'s defaults (name node1, IPv4). */
  node?: Partial<NodeInfo>;
}

export interface TestContext<R extends CommandRunner = RecordingRunner, C extends Clock = FakeClock, L extends Logger = TestLogger>
  extends BackendContext {
  readonly runner: R;
  readonly clock: C;
  readonly logger: L;
}

/**
 * A fresh context: a capturing silent logger, a new prom-client Registry, node `node1`, a
 * recording runner and a fake clock at t=0. Each part can be replaced.
 */
export function testContext<
  R extends CommandRunner = RecordingRunner,
  C extends Clock = FakeClock,
  L extends Logger = TestLogger,
>(overrides: TestContextOverrides<R, C, L> = {}): TestContext<R, C, L> {
  return {
    logger: overrides.logger ?? (createTestLogger() as unknown as L),
    metrics: overrides.metrics ?? new Registry(),
    node: { ...nodeInfo(), ...overrides.node },
    runner: overrides.runner ?? (createRecordingRunner() as unknown as R),
    clock: overrides.clock ?? (createFakeClock() as unknown as C),
  };
}
