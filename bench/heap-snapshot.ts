// Where a V8 heap snapshot's memory goes: self sizes by node type and constructor name, and
// (with --retained) the objects that keep the most memory alive, from the snapshot's dominator
// tree. Reads the file as bytes and scans the node and edge arrays itself, so that snapshots
// larger than V8's largest string can be summarized.
//
//   node --import tsx heap-snapshot.ts FILE [top=25] [--retained]

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Meta {
  node_fields: string[];
  node_types: [string[], ...unknown[]];
  edge_fields: string[];
  edge_types: [string[], ...unknown[]];
}

interface Snapshot {
  meta: Meta;
  strings: string[];
  /** node_fields.length numbers per node. */
  nodes: Uint32Array;
  /** edge_fields.length numbers per edge; to_node is an index into `nodes`. */
  edges: Uint32Array;
}

/** The unsigned integers between `from` and `to` in `buf`, in order. */
function scanNumbers(buf: Buffer, from: number, to: number): Uint32Array {
  let out = new Uint32Array(1 << 20);
  let n = 0;
  let current = 0;
  let inNumber = false;
  for (let i = from; i < to; i++) {
    const c = buf[i] as number;
    if (c >= 48 && c <= 57) {
      current = current * 10 + (c - 48);
      inNumber = true;
      continue;
    }
    if (!inNumber) continue;
    if (n === out.length) {
      const bigger = new Uint32Array(out.length * 2);
      bigger.set(out);
      out = bigger;
    }
    out[n++] = current;
    current = 0;
    inNumber = false;
  }
  return out.subarray(0, n);
}

function readSnapshot(file: string): Snapshot {
  const buf = readFileSync(file);
  const nodesAt = buf.indexOf('"nodes":[');
  const edgesAt = buf.indexOf('"edges":[', nodesAt);
  const afterEdges = buf.indexOf('"trace_function_infos":[', edgesAt);
  const stringsAt = buf.indexOf('"strings":[', edgesAt);
  if (nodesAt < 0 || edgesAt < 0 || stringsAt < 0) throw new Error(`${file} is not a V8 heap snapshot`);
  const head = JSON.parse(`${buf.toString('utf8', 0, nodesAt).replace(/,\s*$/, '')}}`) as { snapshot: { meta: Meta } };
  const strings = JSON.parse(buf.toString('utf8', stringsAt + '"strings":'.length, buf.lastIndexOf(']') + 1)) as string[];
  return {
    meta: head.snapshot.meta,
    strings,
    nodes: scanNumbers(buf, nodesAt + '"nodes":['.length, edgesAt),
    edges: scanNumbers(buf, edgesAt + '"edges":['.length, afterEdges > 0 ? afterEdges : stringsAt),
  };
}

const mb = (b: number) => (b / 1048576).toFixed(1);

class Nodes {
  readonly count: number;
  private readonly nf: number;
  private readonly typeAt: number;
  private readonly nameAt: number;
  private readonly sizeAt: number;
  private readonly types: string[];

  constructor(private readonly s: Snapshot) {
    const f = s.meta.node_fields;
    this.nf = f.length;
    this.typeAt = f.indexOf('type');
    this.nameAt = f.indexOf('name');
    this.sizeAt = f.indexOf('self_size');
    this.types = s.meta.node_types[0];
    this.count = s.nodes.length / this.nf;
  }
  type(i: number): string {
    return this.types[this.s.nodes[i * this.nf + this.typeAt] as number] ?? '?';
  }
  name(i: number): string {
    return this.s.strings[this.s.nodes[i * this.nf + this.nameAt] as number] ?? '?';
  }
  size(i: number): number {
    return this.s.nodes[i * this.nf + this.sizeAt] as number;
  }
  /** Objects by constructor; strings, code, arrays and the rest by type alone. */
  group(i: number): string {
    const t = this.type(i);
    return t === 'object' || t === 'closure' ? `${t} ${this.name(i)}` : t;
  }
}

/** The `top` largest (type, name) groups by total self size, as a table. */
function selfSizes(s: Snapshot, top: number): string {
  const nodes = new Nodes(s);
  const groups = new Map<string, { count: number; size: number }>();
  let total = 0;
  for (let i = 0; i < nodes.count; i++) {
    const key = nodes.group(i);
    const g = groups.get(key) ?? { count: 0, size: 0 };
    g.count++;
    g.size += nodes.size(i);
    groups.set(key, g);
    total += nodes.size(i);
  }
  const rows = [...groups].sort((a, b) => b[1].size - a[1].size).slice(0, top);
  return [
    `heap ${mb(total)} MiB in ${nodes.count} nodes`,
    '| type / constructor | count | MiB |',
    '|---|---:|---:|',
    ...rows.map(([k, g]) => `| ${k} | ${g.count} | ${mb(g.size)} |`),
  ].join('\n');
}

/**
 * Immediate dominators (Cooper, Harvey and Kennedy's iterative algorithm over a reverse
 * post-order) of the graph of strong edges from node 0, the snapshot's root. Returns, per node,
 * its dominator (-1 for nodes not reached), and the reached nodes in post-order.
 */
function dominators(s: Snapshot, nodes: Nodes): { idom: Int32Array; order: Int32Array } {
  const ef = s.meta.edge_fields.length;
  const edgeTypeAt = s.meta.edge_fields.indexOf('type');
  const toAt = s.meta.edge_fields.indexOf('to_node');
  const weak = s.meta.edge_types[0].indexOf('weak');
  const nf = s.meta.node_fields.length;
  const edgeCountAt = s.meta.node_fields.indexOf('edge_count');
  const n = nodes.count;
  const firstEdge = new Uint32Array(n + 1);
  for (let i = 0; i < n; i++) firstEdge[i + 1] = (firstEdge[i] as number) + (s.nodes[i * nf + edgeCountAt] as number);
  const strong = (e: number) => s.edges[e * ef + edgeTypeAt] !== weak;
  const target = (e: number) => (s.edges[e * ef + toAt] as number) / nf;

  // Post-order by an explicit stack.
  const post = new Int32Array(n).fill(-1);
  const order = new Int32Array(n);
  let reached = 0;
  const stack = new Int32Array(n);
  const next = new Uint32Array(n);
  const seen = new Uint8Array(n);
  let sp = 0;
  stack[sp++] = 0;
  seen[0] = 1;
  next[0] = firstEdge[0] as number;
  while (sp > 0) {
    const v = stack[sp - 1] as number;
    const end = firstEdge[v + 1] as number;
    let pushed = false;
    while ((next[v] as number) < end) {
      const e = next[v] as number;
      next[v] = e + 1;
      if (!strong(e)) continue;
      const w = target(e);
      if (seen[w]) continue;
      seen[w] = 1;
      next[w] = firstEdge[w] as number;
      stack[sp++] = w;
      pushed = true;
      break;
    }
    if (pushed) continue;
    sp--;
    post[v] = reached;
    order[reached++] = v;
  }
  // Predecessors of reached nodes, by strong edges.
  const predCount = new Uint32Array(n + 1);
  for (let v = 0; v < n; v++) {
    if ((post[v] as number) < 0) continue;
    for (let e = firstEdge[v] as number; e < (firstEdge[v + 1] as number); e++) {
      if (!strong(e)) continue;
      const w = target(e) + 1;
      predCount[w] = (predCount[w] as number) + 1;
    }
  }
  for (let i = 0; i < n; i++) predCount[i + 1] = (predCount[i + 1] as number) + (predCount[i] as number);
  const preds = new Uint32Array(predCount[n] as number);
  const fill = predCount.slice(0, n);
  for (let v = 0; v < n; v++) {
    if ((post[v] as number) < 0) continue;
    for (let e = firstEdge[v] as number; e < (firstEdge[v + 1] as number); e++) {
      if (!strong(e)) continue;
      const w = target(e);
      preds[fill[w] as number] = v;
      fill[w] = (fill[w] as number) + 1;
    }
  }
  const idom = new Int32Array(n).fill(-1);
  idom[0] = 0;
  const intersect = (a: number, b: number) => {
    while (a !== b) {
      while ((post[a] as number) < (post[b] as number)) a = idom[a] as number;
      while ((post[b] as number) < (post[a] as number)) b = idom[b] as number;
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (let k = reached - 2; k >= 0; k--) {
      const v = order[k] as number;
      let d = -1;
      for (let p = predCount[v] as number; p < (predCount[v + 1] as number); p++) {
        const u = preds[p] as number;
        if (idom[u] === -1) continue;
        d = d === -1 ? u : intersect(u, d);
      }
      if (d !== -1 && idom[v] !== d) {
        idom[v] = d;
        changed = true;
      }
    }
  }
  return { idom, order: order.subarray(0, reached) };
}

/** The objects that retain the most, each with the chain of named objects that dominate it. */
function retainedSizes(s: Snapshot, top: number): string {
  const nodes = new Nodes(s);
  const { idom, order } = dominators(s, nodes);
  const retained = new Float64Array(nodes.count);
  // Post-order: every node comes after the nodes it dominates.
  for (const v of order) {
    retained[v] = (retained[v] as number) + nodes.size(v);
    if (v !== 0) retained[idom[v] as number] = (retained[idom[v] as number] as number) + (retained[v] as number);
  }
  // Named objects (instances of a class, Maps, Sets) retaining the most; plain objects and
  // arrays are counted in the named object that dominates them.
  const named = (v: number) => {
    const t = nodes.type(v);
    if (t !== 'object' && t !== 'closure') return false;
    const name = nodes.name(v);
    return name !== 'Object' && name !== 'Array' && name !== '' && !name.startsWith('system /');
  };
  const chain = (v: number) => {
    const out: string[] = [];
    for (let u = idom[v] as number; u !== 0 && out.length < 4; u = idom[u] as number) if (named(u)) out.push(nodes.name(u));
    return out.join(' < ');
  };
  const candidates: number[] = [];
  for (const v of order) if (named(v) && (retained[v] as number) >= 1 << 20) candidates.push(v);
  candidates.sort((a, b) => (retained[b] as number) - (retained[a] as number));
  return [
    `retained by named objects (dominator tree of ${order.length} reachable nodes, ${mb(retained[0] as number)} MiB)`,
    '| object | retained MiB | held within |',
    '|---|---:|---|',
    ...candidates.slice(0, top).map((v) => `| ${nodes.group(v)} | ${mb(retained[v] as number)} | ${chain(v)} |`),
  ].join('\n');
}

/** The summary `heap-snapshot.ts` prints: self sizes, and retained sizes when asked. */
export function summarizeHeapSnapshot(file: string, top = 25, retained = false): string {
  const s = readSnapshot(file);
  return retained ? `${selfSizes(s, top)}\n\n${retainedSizes(s, top)}` : selfSizes(s, top);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const retained = args.includes('--retained');
  const [file, top] = args.filter((a) => a !== '--retained');
  if (!file) throw new Error('usage: heap-snapshot.ts FILE [top] [--retained]');
  console.log(summarizeHeapSnapshot(file, Number(top ?? 25), retained));
}
