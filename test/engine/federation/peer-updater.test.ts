import { afterEach, describe, expect, it } from 'vitest';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import type { PeerConfig } from '../../../src/engine/config/types.js';
import {
  type PeerDecision,
  type PeerFetcher,
  type PeerFetchOutcome,
  PeerUpdater,
} from '../../../src/engine/federation/peer-updater.js';
import { FetchError, PolicyError } from '../../../src/errors.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeClock } from '../../fakes/fake-clock.js';

const td = TrustDomain.parse('peer.test');
const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const b = (seq: bigint, hint = 300) =>
  TrustBundle.create({
    trustDomain: td,
    jwtAuthorities: [jwtAuthority(`k${seq}`, key)],
    sequence: seq,
    refreshHint: hint,
  });

const peer: PeerConfig = {
  trustDomain: td,
  urls: [new URL('https://peer.test/')],
  profile: { kind: 'https_web' },
  refresh: { minIntervalSeconds: 1, maxIntervalSeconds: 300 },
  keyPolicy: {},
  targetServers: 'all',
  allowEmptyBundle: false,
};

type Step = PeerFetchOutcome | Error | (() => Promise<PeerFetchOutcome>);

class ScriptedFetcher implements PeerFetcher {
  readonly requests: { etag?: string; waitSeconds?: number; url: string }[] = [];
  constructor(readonly steps: Step[]) {}
  async fetch(
    p: PeerConfig,
    opts: { etag?: string; waitSeconds?: number; signal: AbortSignal },
  ): Promise<PeerFetchOutcome> {
    this.requests.push({
      url: p.urls[0]!.href,
      ...(opts.etag !== undefined ? { etag: opts.etag } : {}),
      ...(opts.waitSeconds !== undefined ? { waitSeconds: opts.waitSeconds } : {}),
    });
    const step = this.steps.shift();
    if (step === undefined) {
      // Nothing scripted: hang until aborted, like a held long-poll.
      return new Promise((_, reject) =>
        opts.signal.addEventListener('abort', () => reject(opts.signal.reason)),
      );
    }
    if (step instanceof Error) throw step;
    if (typeof step === 'function') return step();
    return step;
  }
}

const stops: AbortController[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s.abort();
});

function setup(steps: Step[], evaluate?: (cur: TrustBundle | undefined, cand: TrustBundle) => PeerDecision) {
  const clock = new FakeClock();
  const fetcher = new ScriptedFetcher(steps);
  let current: TrustBundle | undefined;
  const log: string[] = [];
  const schedule: number[] = [];
  const updater = new PeerUpdater(peer, {
    clock,
    fetcher,
    random: () => 1,
    current: () => current,
    evaluate: (_p, cur, cand) =>
      evaluate
        ? evaluate(cur, cand)
        : cur && cur.sequence > cand.sequence
          ? { accepted: false, error: new PolicyError('ERR_POLICY_SEQUENCE_ROLLBACK', 'rollback') }
          : { accepted: true, changed: !cur || cur.sequence !== cand.sequence },
    observer: {
      attempt: () => log.push('attempt'),
      accepted: async (_p, bundle) => {
        current = bundle;
        log.push(`accepted:${bundle.sequence}`);
      },
      unchanged: () => log.push('unchanged'),
      refused: (_p, e) => log.push(`refused:${e.code}`),
      failed: (_p, e) => log.push(`failed:${e.code}`),
      scheduled: (_p, at) => schedule.push(at - clock.now()),
    },
  });
  const stop = new AbortController();
  stops.push(stop);
  const running = updater.run(stop.signal);
  return { clock, fetcher, log, schedule, updater, stop, running, current: () => current };
}

const ok = (
  seq: bigint,
  extra: Partial<{ etag: string; supportsLongPoll: boolean; hint: number }> = {},
): PeerFetchOutcome => ({
  kind: 'bundle',
  bundle: b(seq, extra.hint ?? 300),
  url: 'https://peer.test/',
  supportsLongPoll: extra.supportsLongPoll ?? false,
  ...(extra.etag ? { etag: extra.etag } : {}),
});

describe('PeerUpdater', () => {
  it('polls at hint/4 (clamped) after a success', async () => {
    const t = setup([ok(1n), { kind: 'not-modified', url: 'u', etag: 'e', supportsLongPoll: false }]);
    await t.clock.settle();
    expect(t.log).toEqual(['attempt', 'accepted:1']);
    expect(t.schedule).toEqual([75_000]);
    await t.clock.advance(75_000);
    expect(t.log).toEqual(['attempt', 'accepted:1', 'attempt', 'unchanged']);
  });

  it('holds a long-poll at once when the peer supports change notification', async () => {
    const t = setup([
      ok(1n, { etag: '"e1"', supportsLongPoll: true }),
      ok(2n, { etag: '"e2"', supportsLongPoll: true }),
    ]);
    await t.clock.settle();
    await t.clock.advance(1000);
    expect(t.fetcher.requests[1]).toEqual({ url: 'https://peer.test/', etag: '"e1"', waitSeconds: 55 });
    expect(t.log).toContain('accepted:2');
    await t.clock.advance(1000);
    expect(t.fetcher.requests[2]).toMatchObject({ etag: '"e2"', waitSeconds: 55 });
  });

  it('never spins: instant answers to long-polls are paced at the minimum interval, premature 304s end long-polling', async () => {
    const t = setup([
      ok(1n, { etag: '"e1"', supportsLongPoll: true }),
      ok(2n, { etag: '"e2"', supportsLongPoll: true }),
      { kind: 'not-modified', url: 'u', etag: '"e2"', supportsLongPoll: true },
    ]);
    await t.clock.settle();
    expect(t.schedule).toEqual([1000]);
    await t.clock.advance(1000);
    expect(t.schedule).toEqual([1000, 1000]);
    await t.clock.advance(1000);
    // The 304 came back at once although 55 s were asked for: back to hint/4.
    expect(t.schedule).toEqual([1000, 1000, 75_000]);
  });

  it('probes change notification once after the first fetch; a plain server is then polled normally', async () => {
    const t = setup([
      ok(1n, { etag: '"e1"' }),
      { kind: 'not-modified', url: 'u', etag: '"e1"', supportsLongPoll: false },
    ]);
    await t.clock.settle();
    expect(t.schedule).toEqual([1000]);
    await t.clock.advance(1000);
    expect(t.fetcher.requests[1]).toEqual({ url: 'https://peer.test/', etag: '"e1"', waitSeconds: 55 });
    expect(t.schedule).toEqual([1000, 75_000]);
  });

  it('a probe answered by a change (not held) probes again instead of giving up on long-polling', async () => {
    const t = setup([
      ok(1n, { etag: '"e1"' }),
      ok(2n, { etag: '"e2"' }),
      ok(3n, { etag: '"e3"', supportsLongPoll: true }),
    ]);
    await t.clock.settle();
    await t.clock.advance(1000);
    expect(t.fetcher.requests[1]).toMatchObject({ etag: '"e1"', waitSeconds: 55 });
    await t.clock.advance(1000);
    expect(t.fetcher.requests[2]).toMatchObject({ etag: '"e2"', waitSeconds: 55 });
    expect(t.log.filter((l) => l.startsWith('accepted'))).toEqual(['accepted:1', 'accepted:2', 'accepted:3']);
  });

  it('backs off exponentially after failures, capped at the normal interval', async () => {
    const fail = () => new FetchError('ERR_FETCH_CONNECT', 'refused');
    const t = setup([ok(1n, { hint: 40 }), fail(), fail(), fail(), fail(), fail()]);
    await t.clock.settle();
    for (let i = 0; i < 5; i++) await t.clock.runNext();
    // normal interval = 40/4 = 10 s; backoff 1, 2, 4, 8, then capped at 10.
    expect(t.schedule).toEqual([10_000, 1000, 2000, 4000, 8000, 10_000]);
    expect(t.log.filter((l) => l.startsWith('failed'))).toHaveLength(5);
    expect(t.current()!.sequence).toBe(1n);
  });

  it('a refused bundle changes nothing and forgets its ETag', async () => {
    const t = setup([ok(5n, { etag: '"a"' }), ok(4n, { etag: '"b"' }), ok(6n, { etag: '"c"' })]);
    await t.clock.settle();
    await t.clock.runNext();
    expect(t.log).toContain('refused:ERR_POLICY_SEQUENCE_ROLLBACK');
    expect(t.current()!.sequence).toBe(5n);
    await t.clock.runNext();
    expect(t.fetcher.requests[2]!.etag).toBeUndefined();
    expect(t.current()!.sequence).toBe(6n);
  });

  it('update() applies a new entry at once, cutting a held long-poll short', async () => {
    const t = setup([ok(1n, { etag: '"e"', supportsLongPoll: true })]);
    await t.clock.advance(1000);
    expect(t.fetcher.requests).toHaveLength(2); // second one is held
    t.fetcher.steps.push(ok(2n));
    t.updater.update({ ...peer, urls: [new URL('https://mirror.peer.test/')] });
    await t.clock.settle();
    expect(t.fetcher.requests[2]).toEqual({ url: 'https://mirror.peer.test/' });
    expect(t.log).toContain('accepted:2');
  });

  it('non-broker errors are wrapped in a coded error', async () => {
    const t = setup([new Error('boom')]);
    await t.clock.settle();
    expect(t.log).toContain('failed:ERR_FETCH_CONNECT');
  });

  it('stops on abort, even mid long-poll', async () => {
    const t = setup([ok(1n, { etag: '"e"', supportsLongPoll: true })]);
    await t.clock.settle();
    t.stop.abort();
    await expect(t.running).resolves.toBeUndefined();
  });
});
