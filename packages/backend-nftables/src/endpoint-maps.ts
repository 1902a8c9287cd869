// Where each policy chain's endpoints sit in the endpoint maps. A policy chain with n >= 2
// endpoints DNATs with one rule, `dnat to numgen random mod n offset K map @endpoints-G`, whose
// map holds `K+i : address . port` for its endpoints. A change of endpoints writes the new list
// into free numbers of a map and rewrites that one rule; the old numbers are deleted later (a
// `delete element` makes nft 1.0.6 list every set first, which the sync need not wait for).
// A map holds the endpoints of at most a few hundred chains: one map per chain would be found by
// name among thousands of sets at each rule (quadratic), and one map for all would make each
// element added walk every rule bound to it (bench/README.md). A map serves one protocol: its
// value is typed `<family> daddr . <protocol> dport`, which nft 1.0.6 checks against the rule's
// `meta l4proto` when it reads the map back from the kernel (`th dport` fails that check).

import type { NftFamily } from './layout.js';
import { ENDPOINTS_MAP_PREFIX } from './layout.js';
import type { ContainerDeclaration } from './transaction.js';

/** Policy chains whose endpoints share one map, and the numbers one map holds before another is opened. */
export const CHAINS_PER_MAP = 256;
export const SLOTS_PER_MAP = 4096;

/** The endpoints of one policy chain: numbers offset .. offset+size-1 of `map`. */
export interface SlotRange {
  readonly chain: string;
  /** tcp, udp or sctp: the map's type follows it. */
  readonly protocol: string;
  readonly map: string;
  readonly offset: number;
  readonly size: number;
  /** `address . port` of each endpoint, in numgen order, joined by ", " (one string: 10^4 ranges are held). */
  readonly targets: string;
}

interface Range {
  readonly offset: number;
  readonly size: number;
  /** No chain points at it any more: its elements wait for deletion, its numbers stay taken. */
  readonly retired: boolean;
}

/** One endpoint map: its ranges sorted by offset. */
export interface MapUse {
  readonly protocol: string;
  readonly ranges: readonly Range[];
  readonly chains: number;
  readonly slots: number;
  readonly retired: number;
}

/** What the endpoint maps hold, as this process wrote them. */
export interface EndpointMapsState {
  readonly chains: ReadonlyMap<string, SlotRange>;
  readonly maps: ReadonlyMap<string, MapUse>;
  /** The next map is `endpoints-<nextIndex>`. */
  readonly nextIndex: number;
}

/** Nothing numbered yet (fresh maps: a committed plan patches them in place). */
export function noEndpointMaps(): EndpointMapsState {
  return { chains: new Map(), maps: new Map(), nextIndex: 0 };
}

/** What a plan changes: replaced (a full sync starts over) or patched (null: gone). */
export type EndpointMapsNext =
  | { readonly replace: EndpointMapsState; readonly retiredMaps: readonly string[] }
  | { readonly patch: { readonly chains: ReadonlyMap<string, SlotRange | null>; readonly maps: ReadonlyMap<string, MapUse>; readonly nextIndex: number } };

export function endpointsMapDeclaration(family: NftFamily, protocol: string): ContainerDeclaration {
  return { kind: 'map', typeOf: true, type: `numgen random mod 1 : ${family} daddr . ${protocol} dport`, comment: 'service endpoints picked by numgen' };
}

export function isEndpointsMap(name: string): boolean {
  return name.startsWith(ENDPOINTS_MAP_PREFIX) && /^\d+$/.test(name.slice(ENDPOINTS_MAP_PREFIX.length));
}

/** The rule that DNATs to one of a range's endpoints. */
export function endpointsMapRule(family: NftFamily, range: SlotRange): string {
  return `meta l4proto ${range.protocol} dnat ${family} to numgen random mod ${range.size} offset ${range.offset} map @${range.map}`;
}

/** The elements of a range, `K+i : address . port`. */
export function rangeElements(range: SlotRange): [string, { value: string }][] {
  return range.targets.split(', ').map((t, i) => [String(range.offset + i), { value: t }]);
}

const MAP_RULE = /numgen random mod (\d+) offset (\d+) map @(\S+)/;

/**
 * `rule` with its endpoint-map reference written out as an inline map numbered from 0, as the
 * data plane sees it: pictures of two tables compare equal whatever numbers their maps use.
 */
export function inlineEndpointsMap(rule: string, valueOf: (map: string, key: string) => string | undefined): string {
  const m = MAP_RULE.exec(rule);
  if (!m) return rule;
  const [, mod, offset, map] = m;
  const items = Array.from({ length: Number(mod) }, (_, i) => `${i} : ${valueOf(map!, String(Number(offset) + i)) ?? '(missing)'}`);
  return rule.replace(MAP_RULE, `numgen random mod ${mod} map { ${items.join(', ')} }`);
}

/**
 * The state once a plan is applied. A partial plan's patch is applied in place, so that a sync
 * costs what it changed, not the size of the table; `state` must not be shared.
 */
export function applyEndpointMaps(state: EndpointMapsState, next: EndpointMapsNext): EndpointMapsState {
  if ('replace' in next) return next.replace;
  const chains = state.chains as Map<string, SlotRange>;
  const maps = state.maps as Map<string, MapUse>;
  for (const [chain, r] of next.patch.chains) {
    if (r) chains.set(chain, r);
    else chains.delete(chain);
  }
  for (const [name, use] of next.patch.maps) maps.set(name, use);
  return { chains, maps, nextIndex: next.patch.nextIndex };
}

/** Element keys of the retired ranges, per map. */
export function retiredElements(state: EndpointMapsState): [string, string[]][] {
  return [...state.maps].filter(([, use]) => use.retired > 0).map(([map, use]) => [map, retiredKeys(use)]);
}

/** Whether some range waits for its elements' deletion. */
export function hasRetired(state: EndpointMapsState): boolean {
  for (const use of state.maps.values()) if (use.retired > 0) return true;
  return false;
}

/** `state` once the retired ranges of `maps` are deleted from the kernel. */
export function withoutRetired(state: EndpointMapsState, maps: Iterable<string>): EndpointMapsState {
  const next = new Map(state.maps);
  for (const map of maps) {
    const use = next.get(map);
    if (use) next.set(map, dropRetired(use));
  }
  return { ...state, maps: next };
}

/**
 * The numbering of one plan: a copy-on-write view of what is held, in which ranges are placed
 * (first fit, in the chain's own map when it has room) and retired.
 */
export class EndpointMapsPlanner {
  private readonly held: EndpointMapsState;
  private readonly chains = new Map<string, SlotRange | null>();
  private readonly maps = new Map<string, MapUse>();
  private readonly placed = new Set<SlotRange>();
  private readonly retiredMaps: string[] = [];
  private nextIndex: number;
  private mapNames: string[];
  private firstOpen = 0;

  /** full: nothing held is kept; the held maps (and `existingMaps` in the kernel) are retired whole. */
  constructor(
    held: EndpointMapsState,
    private readonly full: boolean,
    existingMaps: Iterable<string> = [],
  ) {
    this.held = full ? noEndpointMaps() : held;
    let next = held.nextIndex;
    if (full) {
      const retired = new Set([...held.maps.keys(), ...[...existingMaps].filter(isEndpointsMap)]);
      this.retiredMaps = [...retired];
      for (const name of retired) next = Math.max(next, Number(name.slice(ENDPOINTS_MAP_PREFIX.length)) + 1);
    }
    this.nextIndex = next;
    this.mapNames = [...this.held.maps.keys()];
  }

  /** The chain's range for these endpoints: the one it has when they are the same, else a new one. */
  place(chain: string, protocol: string, endpoints: readonly string[]): SlotRange {
    const live = this.rangeOf(chain);
    const targets = endpoints.join(', ');
    const size = endpoints.length;
    if (live && live.protocol === protocol && live.targets === targets) {
      this.chains.set(chain, live);
      return live;
    }
    if (live) this.retire(live);
    const map = live && this.hasRoom(live.map, protocol, size) ? live.map : this.openMap(protocol, size);
    const use = this.use(map, protocol);
    const offset = firstFit(use.ranges, size);
    const ranges = [...use.ranges];
    ranges.splice(insertionIndex(ranges, offset), 0, { offset, size, retired: false });
    this.maps.set(map, { protocol, ranges, chains: use.chains + 1, slots: use.slots + size, retired: use.retired });
    const range: SlotRange = { chain, protocol, map, offset, size, targets };
    this.chains.set(chain, range);
    this.placed.add(range);
    return range;
  }

  /** The chain no longer DNATs through a map (gone, one endpoint, affinity): its range retires. */
  release(chain: string): void {
    if (this.chains.has(chain)) return; // placed (or released) by this plan already
    const live = this.held.chains.get(chain);
    if (!live) return;
    this.retire(live);
    this.chains.set(chain, null);
  }

  /** Whether this plan placed the range (its elements must be written). */
  isNew(range: SlotRange): boolean {
    return this.placed.has(range);
  }

  /** The element keys of every retired range, now deleted by this plan's transactions. */
  deleteRetired(): [string, string[]][] {
    const names = new Set([...this.maps.keys(), ...[...this.held.maps].filter(([, u]) => u.retired > 0).map(([n]) => n)]);
    const out: [string, string[]][] = [];
    for (const map of names) {
      const use = this.use(map);
      if (use.retired === 0) continue;
      out.push([map, retiredKeys(use)]);
      this.maps.set(map, dropRetired(use));
    }
    return out;
  }

  next(): EndpointMapsNext {
    if (this.full) {
      const chains = new Map<string, SlotRange>();
      for (const [c, r] of this.chains) if (r) chains.set(c, r);
      return { replace: { chains, maps: new Map(this.maps), nextIndex: this.nextIndex }, retiredMaps: this.retiredMaps };
    }
    // A chain placed again in its own range changes nothing.
    const chains = new Map([...this.chains].filter(([c, r]) => r !== this.held.chains.get(c)));
    return { patch: { chains, maps: this.maps, nextIndex: this.nextIndex } };
  }

  private rangeOf(chain: string): SlotRange | undefined {
    const patched = this.chains.get(chain);
    return patched === null ? undefined : (patched ?? this.held.chains.get(chain));
  }

  private use(map: string, protocol = ''): MapUse {
    return this.maps.get(map) ?? this.held.maps.get(map) ?? { protocol, ranges: [], chains: 0, slots: 0, retired: 0 };
  }

  private retire(range: SlotRange): void {
    const use = this.use(range.map);
    const ranges = use.ranges.map((r) => (r.offset === range.offset && !r.retired ? { ...r, retired: true } : r));
    this.maps.set(range.map, { ...use, ranges, chains: use.chains - 1, retired: use.retired + 1 });
  }

  private hasRoom(map: string, protocol: string, size: number): boolean {
    const use = this.use(map);
    return use.protocol === protocol && (use.chains === 0 || (use.chains < CHAINS_PER_MAP && use.slots + size <= SLOTS_PER_MAP));
  }

  /** Full for any protocol and size: passed for good. */
  private isFull(map: string): boolean {
    const use = this.use(map);
    return use.chains >= CHAINS_PER_MAP || (use.chains > 0 && use.slots >= SLOTS_PER_MAP);
  }

  /** The first map of the protocol with room; else a new map. */
  private openMap(protocol: string, size: number): string {
    while (this.firstOpen < this.mapNames.length && this.isFull(this.mapNames[this.firstOpen]!)) this.firstOpen++;
    for (let i = this.firstOpen; i < this.mapNames.length; i++) if (this.hasRoom(this.mapNames[i]!, protocol, size)) return this.mapNames[i]!;
    const name = `${ENDPOINTS_MAP_PREFIX}${this.nextIndex++}`;
    this.mapNames.push(name);
    return name;
  }
}

/** The element keys of a map's retired ranges. */
function retiredKeys(use: MapUse): string[] {
  return use.ranges.filter((r) => r.retired).flatMap((r) => Array.from({ length: r.size }, (_, i) => String(r.offset + i)));
}

function dropRetired(use: MapUse): MapUse {
  const ranges = use.ranges.filter((r) => !r.retired);
  return { ...use, ranges, slots: ranges.reduce((n, r) => n + r.size, 0), retired: 0 };
}

/** The lowest offset with `size` free numbers among sorted ranges. */
function firstFit(ranges: readonly Range[], size: number): number {
  let end = 0;
  for (const r of ranges) {
    if (r.offset - end >= size) return end;
    end = Math.max(end, r.offset + r.size);
  }
  return end;
}

function insertionIndex(ranges: readonly Range[], offset: number): number {
  let i = ranges.length;
  while (i > 0 && ranges[i - 1]!.offset > offset) i--;
  return i;
}
