import { describe, expect, it } from 'vitest';
import {
  AuditTrail,
  AuditWriter,
  limitRepeatedReports,
  RepeatLimiter,
  verifyAuditLog,
} from '../../../src/adapters/audit/index.js';
import { type BrokerError, FetchError, PolicyError } from '../../../src/errors.js';
import { jsonLogger, MAX_LOG_FIELD_CHARS } from '../../../src/platform/logger.js';
import { MAX_LOGGED_MESSAGE_CHARS } from '../../../src/untrusted-text.js';
import { MemoryAuditFs } from './fake-fs.js';

const peer = (name: string) => ({ trustDomain: { name } });
/** A refusal quoting a peer-chosen 64 KiB key ID with terminal escapes, as a hostile peer sends. */
const hostile = () =>
  new PolicyError('ERR_POLICY_SEQUENCE_REUSED', `key "\u001b]0;pwned\u0007${'k'.repeat(64 * 1024)}" changed`);
// biome-ignore lint/suspicious/noControlCharactersInRegex: asserting their absence
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/;

describe('RepeatLimiter', () => {
  it('passes the first report of an interval, counts the rest, and reports the count with the next', () => {
    let t = 0;
    const l = new RepeatLimiter({ now: () => t, intervalMs: 60_000 });
    expect(l.admit('a')).toEqual({ emit: true, suppressed: 0, sinceMs: undefined });
    for (t = 1000; t < 60_000; t += 1000) expect(l.admit('a')).toEqual({ emit: false });
    // Another key is independent.
    expect(l.admit('b').emit).toBe(true);
    t = 60_000;
    expect(l.admit('a')).toEqual({ emit: true, suppressed: 59, sinceMs: 60_000 });
    expect(l.admit('a')).toEqual({ emit: false });
  });

  it('flushes closed windows with suppressed reports, forgets a prefix, and bounds its keys', () => {
    let t = 0;
    const l = new RepeatLimiter({ now: () => t, intervalMs: 10, maxKeys: 3 });
    l.admit('p1/x');
    l.admit('p1/x');
    l.admit('p2/x');
    t = 5;
    expect(l.flush()).toEqual([]);
    t = 10;
    expect(l.flush()).toEqual([{ key: 'p1/x', suppressed: 1, sinceMs: 10 }]);
    expect(l.size).toBe(0);
    for (const k of ['a', 'b', 'c', 'd']) l.admit(k);
    expect(l.size).toBe(3);
    expect(l.admit('a').emit).toBe(true); // 'a' was evicted as the oldest
    l.forget('b');
    expect(l.admit('b')).toEqual({ emit: true, suppressed: 0, sinceMs: undefined });
    expect(() => new RepeatLimiter({ now: () => 0, intervalMs: 0 })).toThrow(TypeError);
  });
});

describe('limitRepeatedReports: a peer refused every second for an hour', () => {
  it('writes one bounded, escaped log line and audit record per peer and code per minute, with the suppressed count', async () => {
    let t = Date.UTC(2026, 0, 1);
    const now = () => t;
    const logLines: string[] = [];
    const log = jsonLogger((l) => logLines.push(l), { now });
    const fs = new MemoryAuditFs();
    const writer = await AuditWriter.open({ file: '/a.log', keyFile: '/k.pem', fsync: 'never' }, { fs, now });
    const trail = new AuditTrail(writer);
    const pending: Promise<unknown>[] = [];
    const logObserver = limitRepeatedReports(
      {
        refused: (p: { trustDomain: { name: string } }, e: BrokerError) =>
          log.warn('refused peer bundle', {
            trustDomain: p.trustDomain.name,
            code: e.code,
            error: e.message,
          }),
        failed: (p: { trustDomain: { name: string } }, e: BrokerError, _durationMs: number) =>
          log.warn('peer fetch failed', { trustDomain: p.trustDomain.name, code: e.code, error: e.message }),
      },
      new RepeatLimiter({ now }),
    );
    const auditObserver = limitRepeatedReports(
      {
        refused: (p: { trustDomain: { name: string } }, e: BrokerError) =>
          void pending.push(
            trail.bundleRefused({ trustDomain: p.trustDomain.name, code: e.code, message: e.message }),
          ),
      },
      new RepeatLimiter({ now }),
    );
    const start = t;
    for (let i = 0; i < 3600; i++, t += 1000) {
      logObserver.refused!(peer('evil.example'), hostile());
      auditObserver.refused!(peer('evil.example'), hostile());
    }
    // Another peer and another code are reported on their own.
    logObserver.refused!(peer('other.example'), hostile());
    logObserver.failed!(peer('evil.example'), new FetchError('ERR_FETCH_CONNECT', 'refused'), 5);
    await Promise.all(pending);
    await writer.close();

    expect(logLines).toHaveLength(62);
    const evil = logLines.slice(0, 60).map((l) => JSON.parse(l) as { error: string; code: string });
    expect(evil.every((r) => r.code === 'ERR_POLICY_SEQUENCE_REUSED')).toBe(true);
    expect(evil[0]!.error).not.toContain('suppressed');
    expect(evil[1]!.error).toMatch(/^\[59 identical reports suppressed in the last 60 s\] key "/);
    for (const line of logLines) {
      expect(line.length).toBeLessThan(MAX_LOG_FIELD_CHARS + 400);
      expect(line.slice(0, -1)).not.toMatch(CONTROL);
      if (line.includes('ERR_POLICY')) expect(line).toContain('\\\\u001b]0;pwned\\\\u0007');
    }
    // Without the limits this hour wrote 3,600 lines of 64 KiB each (~236 MB) to each sink.
    const audit = fs.text('/a.log');
    expect(audit.length).toBeLessThan(61 * (MAX_LOGGED_MESSAGE_CHARS + 600));
    const v = verifyAuditLog(audit, writer.publicKey);
    if (!v.ok) throw new Error(v.message);
    const refused = v.records.filter((r) => r.type === 'bundle-refused');
    expect(refused).toHaveLength(60);
    expect(String(refused[1]!.data.message)).toMatch(
      /^\[59 identical reports suppressed in the last 60 s\] key /,
    );
    expect(t - start).toBe(3_600_000);
  });
});

describe('bounded, escaped peer strings in the audit trail and the logger', () => {
  it('AuditTrail bounds and escapes message and detail, and records a suppressed count', async () => {
    const fs = new MemoryAuditFs();
    const writer = await AuditWriter.open(
      { file: '/a.log', keyFile: '/k.pem', fsync: 'never' },
      { fs, now: () => 0 },
    );
    const trail = new AuditTrail(writer);
    const msg = hostile().message;
    const r = await trail.bundleRefused({
      trustDomain: 'evil.example',
      code: 'ERR_X',
      message: msg,
      suppressed: 7,
    });
    const d = await trail.drift({ server: 's', trustDomain: 'evil.example', detail: msg, repaired: false });
    const w = await trail.spireWrite({
      server: 's',
      trustDomain: 'evil.example',
      operation: 'set',
      result: 'error',
      message: msg,
    });
    const v = await trail.revocation({ trustDomain: 'evil.example', code: 'ERR_PEER_REMOVED', message: msg });
    await writer.close();
    for (const text of [r!.data.message, d!.data.detail, w!.data.message, v!.data.message]) {
      expect(String(text).length).toBeLessThan(MAX_LOGGED_MESSAGE_CHARS + 40);
      expect(String(text)).not.toMatch(CONTROL);
      expect(String(text)).toMatch(/^key "\\u001b\]0;pwned\\u0007k+…\(\+\d+ chars\)$/);
    }
    expect(r!.data.suppressed).toBe(7);
    const none = await new AuditTrail({ append: async (_t, data) => ({ data }) as never }).bundleRefused({
      trustDomain: 'a',
      code: 'ERR_X',
      message: 'm',
    });
    expect(none!.data).toEqual({ trustDomain: 'a', code: 'ERR_X', message: 'm' });
  });

  it('jsonLogger bounds every string field and escapes control characters', () => {
    const lines: string[] = [];
    const log = jsonLogger((l) => lines.push(l), { now: () => 0 });
    log.warn('refused', {
      error: `\u001b[2J${'x'.repeat(100_000)}`,
      err: new Error(`\u0007${'y'.repeat(100_000)}`),
    });
    expect(lines[0]!.length).toBeLessThan(2 * MAX_LOG_FIELD_CHARS + 200);
    const rec = JSON.parse(lines[0]!) as { error: string; err: { message: string } };
    expect(rec.error.startsWith('\\u001b[2Jxxx')).toBe(true);
    expect(rec.err.message.startsWith('\\u0007yyy')).toBe(true);
    expect(rec.error).toMatch(/…\(\+\d+ chars\)$/);
  });
});
