import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../cli/options.js';
import { ConfigError } from './field-error.js';

const file = (gates: string) => `apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nfeatureGates:\n${gates}`;
const fromFile = (gates: string) => resolveOptions(['--config=/kube-proxy.yaml'], { readFile: () => file(gates) });

function refusal(resolve: () => unknown): string {
  try {
    resolve();
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('the configuration was accepted');
}

describe('feature gates', () => {
  it('refuses an unknown gate in the configuration file, as upstream', () => {
    expect(refusal(() => fromFile('  NoSuchGate: true\n'))).toContain('featureGates.NoSuchGate: Invalid value: true: unrecognized feature gate: NoSuchGate');
  });

  it('refuses an unknown gate given with --feature-gates', () => {
    expect(refusal(() => resolveOptions(['--feature-gates=PreferSameTrafficDistribution=true,Typo=false']))).toContain(
      'featureGates.Typo: Invalid value: false: unrecognized feature gate: Typo',
    );
  });

  it('accepts known gates, including the logging gates of component-base', () => {
    expect(fromFile('  PreferSameTrafficDistribution: false\n  ContextualLogging: true\n  AllAlpha: false\n').config.featureGates).toEqual({
      PreferSameTrafficDistribution: false,
      ContextualLogging: true,
      AllAlpha: false,
    });
    expect(resolveOptions(['--feature-gates=LoggingBetaOptions=false']).config.featureGates).toEqual({ LoggingBetaOptions: false });
  });

  it('refuses a locked gate set against its value, and accepts it set to that value', () => {
    expect(refusal(() => fromFile('  NFTablesProxyMode: false\n'))).toContain(
      'featureGates.NFTablesProxyMode: Invalid value: false: cannot set feature gate NFTablesProxyMode to false, feature is locked to true',
    );
    expect(fromFile('  NFTablesProxyMode: true\n').config.featureGates).toEqual({ NFTablesProxyMode: true });
  });
});
