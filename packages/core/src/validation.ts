// The API server's name checks (k8s.io/apimachinery/pkg/util/validation), for objects that did
// not come through it (manifest files) or came from a server we should not trust blindly. Names
// end up in iptables, nft and ipset payloads: only what the API would accept may get there.
// Each check returns why the value is invalid, or undefined when it is valid.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const PORT_NAME_CHARS = /^[-a-z0-9]+$/;

export const DNS1123_LABEL_MAX_LENGTH = 63;
export const DNS1035_LABEL_MAX_LENGTH = 63;
export const DNS1123_SUBDOMAIN_MAX_LENGTH = 253;
export const LABEL_VALUE_MAX_LENGTH = 63;
/** IANA_SVC_NAME (RFC 6335). */
export const PORT_NAME_MAX_LENGTH = 15;

/** Manifest files can hold any YAML type where the API has a string: that is invalid too. */
function check(value: unknown, max: number, pattern: RegExp, message: string): string | undefined {
  if (typeof value !== 'string') return 'must be a string';
  if (value.length > max) return `must be no more than ${max} characters`;
  return pattern.test(value) ? undefined : message;
}

/** A namespace, or an EndpointSlice port name. */
export function validateDNS1123Label(value: unknown): string | undefined {
  return check(value, DNS1123_LABEL_MAX_LENGTH, DNS1123_LABEL, "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character");
}

/** A Service name: a DNS-1123 label that starts with a letter. */
export function validateDNS1035Label(value: unknown): string | undefined {
  return check(value, DNS1035_LABEL_MAX_LENGTH, DNS1035_LABEL, "must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character");
}

/** An EndpointSlice name: dot-separated DNS-1123 labels. */
export function validateDNS1123Subdomain(value: unknown): string | undefined {
  return check(value, DNS1123_SUBDOMAIN_MAX_LENGTH, DNS1123_SUBDOMAIN, "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
}

/** A label value (e.g. kubernetes.io/service-name); the empty value is valid. */
export function validateLabelValue(value: unknown): string | undefined {
  return check(value, LABEL_VALUE_MAX_LENGTH, LABEL_VALUE, "must be empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
}

/** A Service port name (IANA_SVC_NAME); callers allow "" where the API does (a single port). */
export function validatePortName(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'must be a string';
  if (value.length === 0 || value.length > PORT_NAME_MAX_LENGTH) return `must be 1 to ${PORT_NAME_MAX_LENGTH} characters`;
  if (!PORT_NAME_CHARS.test(value)) return "must contain only lower case alphanumeric characters or '-'";
  if (!/[a-z]/.test(value)) return 'must contain at least one letter';
  if (value.includes('--')) return "must not contain consecutive '-'";
  if (value.startsWith('-') || value.endsWith('-')) return "must not begin or end with '-'";
  return undefined;
}

/** `what "value" is invalid: reason`, with the value quoted so that control characters show. */
export function invalidValueMessage(what: string, value: unknown, reason: string): string {
  return `${what} ${JSON.stringify(value)} is invalid: ${reason}`;
}

/**
 * Which objects were refused and why, so that each is reported once: the trackers of both IP
 * families see every object, and informers deliver unchanged objects again. Holds only objects
 * that are refused now; a valid or deleted object is forgotten.
 */
export class RefusedObjects {
  private readonly reasons = new Map<string, string>();

  /** Records why `key` is refused (undefined: it is not); true when that is news to report. */
  note(key: string, reason: string | undefined): boolean {
    if (reason === undefined) {
      this.reasons.delete(key);
      return false;
    }
    if (this.reasons.get(key) === reason) return false;
    this.reasons.set(key, reason);
    return true;
  }

  get size(): number {
    return this.reasons.size;
  }
}
