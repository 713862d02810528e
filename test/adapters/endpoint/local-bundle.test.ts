import { describe, expect, it } from 'vitest';
import {
  LocalBundle,
  type PollOutcome,
  type PublishedBundle,
} from '../../../src/adapters/endpoint/local-bundle.js';
import { parseBundle } from '../../../src/core/bundle/codec.js';
import { bundlesEqual } from '../../../src/core/bundle/diff.js';
import { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { BundleError } from '../../../src/errors.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { FakeBundleGetter, LOCAL_TD, makeBundle, makeCa, RecordingLogger } from './fixtures.js';

function setup(
  opts: { refreshHintSeconds?: number; pollIntervalMs?: number; idlePollIntervalMs?: number } = {},
) {
  const clock = new FakeClock();
  const logger = new RecordingLogger();
  const source = new FakeBundleGetter();
  const outcomes: PollOutcome[] = [];
  const local = new LocalBundle({
    source,
    trustDomain: LOCAL_TD,
    ...opts,
    onPoll: (o) => outcomes.push(o),
    deps: { clock, logger },
  });
  return { clock, logger, source, local, outcomes };
}

describe('LocalBundle', () => {
  it('publishes the source bundle with the configured refresh hint and SPIRE sequence', async () => {
    const { source, local } = setup({ refreshHintSeconds: 120 });
    source.bundle = await makeBundle({ sequence: 7n, refreshHint: 999 });
    const doc = await local.refresh();
    const json = JSON.parse(doc.body.toString('utf8'));
    expect(json.spiffe_refresh_hint).toBe(120);
    expect(json.spiffe_sequence).toBe(7);
    expect(doc.refreshHint).toBe(120);
    expect(doc.version).toBe(1);
    expect(doc.etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    const parsed = parseBundle(LOCAL_TD, doc.body).bundle;
    expect(bundlesEqual(parsed, source.bundle, { refreshHint: false })).toBe(true);
    expect(local.current()).toBe(doc);
  });

  it('changes the document only when the content changes (authorities or sequence)', async () => {
    const { source, local, outcomes } = setup();
    const ca1 = await makeCa();
    const ca2 = await makeCa();
    const b1 = await makeBundle({ cas: [ca1, ca2], sequence: 1n });
    source.bundle = b1;
    const d1 = await local.refresh();
    // Same content in another authority order, with another source hint: unchanged.
    source.bundle = TrustBundle.create({
      trustDomain: LOCAL_TD,
      x509Authorities: [ca2.der, ca1.der],
      jwtAuthorities: [...b1.jwtAuthorities.values()],
      refreshHint: 42,
      sequence: 1n,
    });
    const d2 = await local.refresh();
    expect(d2).toBe(d1);
    // Sequence bump alone is a change.
    source.bundle = b1.withSequence(2n);
    const d3 = await local.refresh();
    expect(d3.version).toBe(2);
    expect(d3.etag).not.toBe(d1.etag);
    expect(outcomes.map((o) => o.result)).toEqual(['changed', 'unchanged', 'changed']);
  });

  it('notifies subscribers of every new version, once', async () => {
    const { source, local } = setup();
    const seen: PublishedBundle[] = [];
    const unsubscribe = local.subscribe((d) => seen.push(d));
    source.bundle = await makeBundle({ sequence: 1n });
    await local.refresh();
    await local.refresh();
    source.bundle = source.bundle.withSequence(2n);
    await local.refresh();
    unsubscribe();
    source.bundle = source.bundle.withSequence(3n);
    await local.refresh();
    expect(seen.map((d) => d.version)).toEqual([1, 2]);
  });

  it('keeps serving the last good document when a poll fails, and reports the failure', async () => {
    const { source, local, logger, outcomes } = setup();
    source.bundle = await makeBundle();
    const good = await local.refresh();
    source.error = new Error('connection refused');
    await expect(local.refresh()).rejects.toThrow('connection refused');
    expect(local.current()).toBe(good);
    expect(outcomes.at(-1)?.result).toBe('error');
    expect(logger.at('warn').some((m) => m.includes('still serving the last good one'))).toBe(true);
  });

  it('refuses a bundle of another trust domain', async () => {
    const { source, local } = setup();
    source.bundle = await makeBundle({ td: TrustDomain.parse('other.test') });
    const err = await local.refresh().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BundleError);
    expect((err as BundleError).code).toBe('ERR_BUNDLE_TRUST_DOMAIN_MISMATCH');
    expect(local.current()).toBeUndefined();
  });

  it('polls every interval on the injected clock, and stops on abort', async () => {
    const { clock, source, local } = setup({ pollIntervalMs: 250, idlePollIntervalMs: 250 });
    source.bundle = await makeBundle({ sequence: 1n });
    const ac = new AbortController();
    const running = local.run(ac.signal);
    await clock.settle();
    expect(source.calls).toBe(1);
    expect(local.current()?.version).toBe(1);
    source.bundle = source.bundle.withSequence(2n);
    await clock.advance(249);
    expect(source.calls).toBe(1);
    await clock.advance(1);
    expect(source.calls).toBe(2);
    expect(local.current()?.version).toBe(2);
    await clock.advance(250 * 4);
    expect(source.calls).toBe(6);
    ac.abort();
    await running;
    await clock.advance(10_000);
    expect(source.calls).toBe(6);
  });

  it('polls at the idle cadence while nobody waits, at the fast one while a client watches', async () => {
    const { clock, source, local } = setup({ pollIntervalMs: 250, idlePollIntervalMs: 2_000 });
    source.bundle = await makeBundle({ sequence: 1n });
    const ac = new AbortController();
    const running = local.run(ac.signal);
    await clock.settle();
    expect(source.calls).toBe(1);
    await clock.advance(1_999);
    expect(source.calls).toBe(1);
    await clock.advance(1);
    expect(source.calls).toBe(2);
    // 300 ms into the idle sleep a client starts waiting: the next poll comes at once (250 ms
    // after the last one have passed), then every 250 ms.
    await clock.advance(300);
    const unwatch = local.watch();
    expect(local.watchers()).toBe(1);
    await clock.settle();
    expect(source.calls).toBe(3);
    await clock.advance(250 * 4);
    expect(source.calls).toBe(7);
    // Done waiting: back to the idle cadence after the sleep in progress.
    unwatch();
    unwatch();
    expect(local.watchers()).toBe(0);
    await clock.advance(250);
    expect(source.calls).toBe(8);
    await clock.advance(1_999);
    expect(source.calls).toBe(8);
    await clock.advance(1);
    expect(source.calls).toBe(9);
    ac.abort();
    await running;
  });

  it('a watcher arriving early in an idle sleep gets the next poll 250 ms after the last one', async () => {
    const { clock, source, local } = setup({ pollIntervalMs: 250, idlePollIntervalMs: 2_000 });
    source.bundle = await makeBundle({ sequence: 1n });
    const ac = new AbortController();
    const running = local.run(ac.signal);
    await clock.settle();
    await clock.advance(100);
    const unwatch = local.watch();
    await clock.advance(149);
    expect(source.calls).toBe(1);
    await clock.advance(1);
    expect(source.calls).toBe(2);
    unwatch();
    ac.abort();
    await running;
  });

  it('refuses an idle interval shorter than the poll interval', () => {
    expect(() => setup({ pollIntervalMs: 500, idlePollIntervalMs: 250 })).toThrow(TypeError);
  });

  it('coalesces concurrent refreshes but always reads after the call', async () => {
    const { source, local } = setup();
    source.bundle = await makeBundle({ sequence: 1n });
    let open!: () => void;
    source.gate = new Promise<void>((r) => {
      open = r;
    });
    const first = local.refresh();
    const second = local.refresh();
    const third = local.refresh();
    expect(source.calls).toBe(1);
    source.bundle = source.bundle.withSequence(2n);
    source.gate = undefined;
    open();
    expect((await first).bundle.sequence).toBe(2n);
    // second and third share ONE follow-up read started after the first finished.
    const [d2, d3] = await Promise.all([second, third]);
    expect(d2).toBe(d3);
    expect(source.calls).toBe(2);
  });

  it('abandons a GetBundle that does not answer within fetchTimeoutMs (injected clock)', async () => {
    const clock = new FakeClock();
    let seenSignal: AbortSignal | undefined;
    const local = new LocalBundle({
      source: {
        getBundle: (opts) =>
          new Promise((_resolve, reject) => {
            seenSignal = opts?.signal;
            opts?.signal?.addEventListener('abort', () => reject(opts.signal?.reason));
          }),
      },
      trustDomain: LOCAL_TD,
      fetchTimeoutMs: 2000,
      deps: { clock },
    });
    const pending = local.refresh().catch((e: unknown) => e);
    await clock.advance(1999);
    expect(seenSignal?.aborted).toBe(false);
    await clock.advance(1);
    expect(seenSignal?.aborted).toBe(true);
    expect(String(await pending)).toContain('did not answer within 2000 ms');
  });

  it('ready() resolves with the first document', async () => {
    const { source, local } = setup();
    const ready = local.ready();
    source.bundle = await makeBundle();
    const doc = await local.refresh();
    await expect(ready).resolves.toBe(doc);
    await expect(local.ready()).resolves.toBe(doc);
  });

  it('warns like SPIRE for a hint below 1 minute or at least 24 hours, and refuses nonsense', () => {
    expect(setup({ refreshHintSeconds: 30 }).logger.at('warn')).toHaveLength(1);
    expect(setup({ refreshHintSeconds: 86_400 }).logger.at('warn')).toHaveLength(1);
    expect(setup({ refreshHintSeconds: 300 }).logger.at('warn')).toHaveLength(0);
    expect(() => setup({ refreshHintSeconds: 0 })).toThrow(TypeError);
    expect(() => setup({ pollIntervalMs: -1 })).toThrow(TypeError);
  });
});

/** A source that also answers sequence-only reads, counting both kinds. */
class SequencedGetter extends FakeBundleGetter {
  sequenceCalls = 0;
  async getBundleSequence(): Promise<bigint> {
    this.sequenceCalls++;
    if (this.error) throw this.error;
    return this.bundle!.sequence;
  }
}

describe('LocalBundle with sequence-only polls', () => {
  function sequenced(fullReadIntervalMs?: number) {
    const clock = new FakeClock();
    const source = new SequencedGetter();
    const local = new LocalBundle({
      source,
      trustDomain: LOCAL_TD,
      pollIntervalMs: 250,
      ...(fullReadIntervalMs !== undefined ? { fullReadIntervalMs } : {}),
      deps: { clock, logger: new RecordingLogger() },
    });
    return { clock, source, local };
  }

  it('reads only the sequence while it stays put, and the whole bundle once it moves', async () => {
    const { clock, source, local } = sequenced();
    source.bundle = await makeBundle({ sequence: 3n });
    await local.refresh();
    expect([source.calls, source.sequenceCalls]).toEqual([1, 0]);
    for (let i = 0; i < 5; i++) {
      await clock.advance(250);
      expect((await local.refresh()).version).toBe(1);
    }
    expect([source.calls, source.sequenceCalls]).toEqual([1, 5]);
    source.bundle = await makeBundle({ sequence: 4n });
    const next = await local.refresh();
    expect(next.version).toBe(2);
    expect(next.bundle.sequence).toBe(4n);
    expect([source.calls, source.sequenceCalls]).toEqual([2, 6]);
  });

  it('still reads the whole bundle every fullReadIntervalMs: a change without a new sequence is published', async () => {
    const { clock, source, local } = sequenced(1_000);
    source.bundle = await makeBundle({ sequence: 3n });
    await local.refresh();
    source.bundle = await makeBundle({ sequence: 3n }); // other keys, same sequence
    await clock.advance(500);
    expect((await local.refresh()).version).toBe(1);
    await clock.advance(500);
    const doc = await local.refresh();
    expect(doc.version).toBe(2);
    expect(bundlesEqual(doc.bundle, source.bundle, { refreshHint: false })).toBe(true);
  });

  it('never trusts a zero sequence: every poll is a full read', async () => {
    const { clock, source, local } = sequenced();
    source.bundle = await makeBundle({ sequence: 0n });
    await local.refresh();
    await clock.advance(250);
    await local.refresh();
    expect([source.calls, source.sequenceCalls]).toEqual([2, 0]);
  });

  it('a failed sequence read keeps the published document and reports the error', async () => {
    const { clock, source, local } = sequenced();
    source.bundle = await makeBundle({ sequence: 3n });
    const first = await local.refresh();
    source.error = new Error('SPIRE unavailable');
    await clock.advance(250);
    await expect(local.refresh()).rejects.toThrow('SPIRE unavailable');
    expect(local.current()).toBe(first);
  });
});
