import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatText, goQuote } from './format.js';
import { createLogger, levelForVerbosity } from './logger.js';

// klog's header: severity, MMDD, hh:mm:ss.micros, thread id right-aligned in 7 columns, file:line.
const KLOG_HEADER = /^([IWEF])(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6}) [ \d]{7} ([^\s:\]]+):(\d+)\] /;

function capture(format: 'json' | 'text', verbosity: number) {
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk, _e, cb) => (lines.push(String(chunk)), cb()) });
  return { lines, logger: createLogger({ format, level: levelForVerbosity(verbosity), destination: sink }) };
}

describe('text format (klog)', () => {
  it('writes one klog line per record: header, quoted message, key=value pairs', () => {
    const { lines, logger } = capture('text', 0);
    const before = new Date();
    logger.child({ component: 'proxier', ipFamily: 'IPv4' }).info({ services: 3, endpoints: 7, full: true, ports: [80, 443] }, 'First sync done');
    expect(lines).toHaveLength(1);
    const line = lines[0] as string;
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    const m = KLOG_HEADER.exec(line);
    expect(m, line).not.toBeNull();
    const [, sev, month, day, , , , , file] = m as RegExpExecArray;
    expect(sev).toBe('I');
    expect(Number(month)).toBe(before.getMonth() + 1);
    expect(Number(day)).toBe(before.getDate());
    // The call site of logger.info, not the logging machinery.
    expect(file).toBe('logger.test.ts');
    expect(line.slice(m?.[0].length)).toBe('"First sync done" component="proxier" ipFamily="IPv4" services=3 endpoints=7 full=true ports=[80,443]\n');
    expect(line).toContain(` ${String(process.pid).padStart(7, ' ')} `);
  });

  it('uses W, E and F, puts err right after the message and keeps multi-line values on one line', () => {
    const { lines, logger } = capture('text', 0);
    logger.warn({ flag: 'x' }, 'careful');
    logger.error({ err: new Error('iptables-restore: line 3 failed\nCOMMIT'), ipFamily: 'IPv6' }, 'Failed to sync proxy rules; will retry');
    logger.fatal('stop');
    expect(lines.map((l) => l[0])).toEqual(['W', 'E', 'F']);
    expect(lines[1]).toMatch(/\] "Failed to sync proxy rules; will retry" err="iptables-restore: line 3 failed\\nCOMMIT" ipFamily="IPv6"\n$/);
    for (const l of lines) expect(l.trimEnd().split('\n')).toHaveLength(1);
  });

  it('quotes strings as Go strconv.Quote does', () => {
    expect(goQuote('a "b" \\ c\td\u0001é')).toBe('"a \\"b\\" \\\\ c\\td\\x01é"');
    const line = formatText({ time: Date.UTC(2024, 11, 2, 16, 30, 43, 185) + 0.123, severity: 'I', verbosity: 0, caller: 'app/server.ts:12', msg: 'm', fields: [['k', { a: 1 }], ['n', null]] }, 12);
    expect(line).toMatch(/^I1202 \d\d:30:43\.185123 {6}12 server\.ts:12\] "m" k=\{"a":1\} n=null\n$/);
  });
});

describe('json format (component-base)', () => {
  it('writes one JSON object per line with ts (float ms), caller, msg, v and the fields', () => {
    const { lines, logger } = capture('json', 2);
    const before = Date.now();
    logger.child({ component: 'proxier' }).debug({ durationMs: 3 }, 'SyncProxyRules complete');
    logger.info({ mode: 'iptables' }, 'Starting');
    logger.error({ err: new Error('boom'), ipFamily: 'IPv4' }, 'Failed to sync proxy rules; will retry');
    expect(lines).toHaveLength(3);
    const [debug, info, error] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(Object.keys(debug ?? {}).slice(0, 4)).toEqual(['ts', 'caller', 'msg', 'v']);
    expect(debug).toMatchObject({ msg: 'SyncProxyRules complete', v: 2, component: 'proxier', durationMs: 3, caller: expect.stringMatching(/^log\/logger\.test\.ts:\d+$/) });
    expect(info).toMatchObject({ msg: 'Starting', v: 0, mode: 'iptables' });
    const ts = debug?.ts as number;
    expect(ts).toBeGreaterThanOrEqual(before - 1);
    expect(ts).toBeLessThan(Date.now() + 1);
    // Errors: the message under err, no verbosity, and no pino keys.
    expect(error).toMatchObject({ msg: 'Failed to sync proxy rules; will retry', err: 'boom', ipFamily: 'IPv4' });
    expect(error).not.toHaveProperty('v');
    for (const r of [debug, info, error]) for (const k of ['level', 'time', 'pid', 'hostname']) expect(r).not.toHaveProperty(k);
  });
});

describe('verbosity (-v)', () => {
  it('shows V(2) records only from -v=2 on', () => {
    expect([0, 1, 2, 4, 5, 9].map(levelForVerbosity)).toEqual(['info', 'info', 'debug', 'debug', 'trace', 'trace']);
    for (const [v, expected] of [[0, ['info']], [1, ['info']], [2, ['debug', 'info']], [5, ['trace', 'debug', 'info']]] as const) {
      const { lines, logger } = capture('json', v);
      logger.trace('trace');
      logger.debug('debug');
      logger.info('info');
      expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg), `-v=${v}`).toEqual(expected);
    }
  });
});
