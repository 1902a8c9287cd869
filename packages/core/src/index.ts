export * from './model.js';
export * from './command.js';
export * from './config.js';
export * from './contract.js';
export * from './handler.js';
export * from './metrics.js';
