// Which local ports the proxy may listen on: upstream's --proxy-port-range ("begin-end",
// "begin+offset", or a single port; empty, "0" or "0-0" lets the kernel choose).

export interface PortRange {
  readonly base: number;
  /** Number of ports, >= 1. */
  readonly size: number;
}

/** Parses a port range; undefined means "any ephemeral port". Throws on malformed input. */
export function parsePortRange(text: string): PortRange | undefined {
  const value = text.trim();
  if (value === '' || value === '0' || value === '0-0') return undefined;
  const match = /^(\d{1,5})(?:([-+])(\d{1,5}))?$/.exec(value);
  if (!match) throw new Error(`invalid port range ${JSON.stringify(text)}: want "begin-end" or "begin+offset"`);
  const base = Number(match[1]);
  let last = base;
  if (match[2] === '-') last = Number(match[3]);
  else if (match[2] === '+') last = base + Number(match[3]);
  if (base < 1 || last > 65535 || last < base) {
    throw new Error(`invalid port range ${JSON.stringify(text)}: ports must satisfy 1 <= begin <= end <= 65535`);
  }
  return { base, size: last - base + 1 };
}

/**
 * Hands out candidate ports. Within a range it starts at a random offset and walks the range
 * once, skipping ports it already handed out; without a range it offers port 0 (ephemeral).
 */
export class PortAllocator {
  private readonly inUse = new Set<number>();

  constructor(
    private readonly range: PortRange | undefined,
    private readonly random: () => number = Math.random,
  ) {}

  *candidates(): Generator<number> {
    if (!this.range) {
      yield 0;
      return;
    }
    const { base, size } = this.range;
    const start = Math.floor(this.random() * size);
    for (let i = 0; i < size; i++) {
      const port = base + ((start + i) % size);
      if (!this.inUse.has(port)) yield port;
    }
  }

  /** Marks a port (the one actually bound) as ours. */
  claim(port: number): void {
    this.inUse.add(port);
  }

  release(port: number): void {
    this.inUse.delete(port);
  }
}
