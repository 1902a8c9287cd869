export * from './exec-runner.js';
