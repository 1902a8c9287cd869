// Configuration errors in Kubernetes' field.Error form: "<field>: Invalid value: <value>: <why>",
// so every message names the field and the value that was refused.

export interface FieldError {
  readonly field: string;
  readonly value: unknown;
  readonly detail: string;
}

export function invalid(field: string, value: unknown, detail: string): FieldError {
  return { field, value, detail };
}

export function formatFieldError(e: FieldError): string {
  return `${e.field}: Invalid value: ${formatValue(e.value)}: ${e.detail}`;
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return 'null';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Thrown when a configuration (file or flags) does not pass decoding or validation. */
export class ConfigError extends Error {
  constructor(
    readonly errors: readonly FieldError[],
    readonly source: string,
  ) {
    super(`invalid configuration (${source}):\n  ${errors.map(formatFieldError).join('\n  ')}`);
    this.name = 'ConfigError';
  }
}
