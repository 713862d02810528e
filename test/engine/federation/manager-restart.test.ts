import { afterEach, describe, expect, it } from 'vitest';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import type { Allowlist, PeerConfig } from '../../../src/engine/config/types.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { FederationManager, type RestoredPeer } from '../../../src/engine/federation/manager.js';
import type { PeerFetcher, PeerFetchOutcome } from '../../../src/engine/federation/peer-updater.js';
import { FetchError, RuntimeError } from '../../../src/errors.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeClock } from '../../fakes/fake-clock.js';

// Issue 16 items 1 and 2, and issue 11 item 6: what survives a restart (the persisted sequence
// high-water mark, last-known-good bundles) and what happens when a bundle cannot be persisted.
// The manager runs the real policy (no injected evaluator).

const key = () => keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const bundle = (td: string, seq: bigint, kid = `k${seq}`) =>
  TrustBundle.create({
    trustDomain: TrustDomain.parse(td),
    jwtAuthorities: [jwtAuthority(kid, key())],
    sequence: seq,
    refreshHint: 60,
  });
const peer = (td: string): PeerConfig => ({
  trustDomain: TrustDomain.parse(td),
  urls: [new URL(`https://${td}/`)],
  profile: { kind: 'https_web' },
  refresh: { minIntervalSeconds: 1, maxIntervalSeconds: 300 },
  keyPolicy: {},
  targetServers: 'all',
  allowEmptyBundle: false,
});
const allowlist = (...peers: PeerConfig[]): Allowlist => ({ peers, version: 'v1' });

class TableFetcher implements PeerFetcher {
  readonly next = new Map<string, TrustBundle | Error>();
  calls = 0;
  async fetch(p: PeerConfig): Promise<PeerFetchOutcome> {
    this.calls++;
    const v = this.next.get(p.trustDomain.name);
    if (!v) throw new FetchError('ERR_FETCH_CONNECT', 'connection refused');
    if (v instanceof Error) throw v;
    return { kind: 'bundle', bundle: v, url: p.urls[0]!.href, supportsLongPoll: false };
  }
}

const stops: AbortController[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s.abort();
});

function setup(restored: RestoredPeer[] = []) {
  const clock = new FakeClock();
  const store = new FederatedBundleStore();
  const fetcher = new TableFetcher();
  const persisted: string[] = [];
  const resets: string[] = [];
  const failed: string[] = [];
  let failPersist = false;
  const manager = new FederationManager({
    clock,
    fetcher,
    store,
    random: () => 1,
    persist: async (b) => {
      if (failPersist) throw new RuntimeError('ERR_STATE_WRITE', 'cannot write: ENOSPC');
      persisted.push(`${b.trustDomain.name}@${b.sequence}`);
    },
    forget: async () => undefined,
    persistReset: async (td) => {
      resets.push(td);
    },
    observer: { failed: (p, e) => failed.push(`${p.trustDomain.name}:${e.code}`) },
  });
  manager.restore(restored);
  const stop = new AbortController();
  stops.push(stop);
  const running = manager.run(stop.signal);
  return {
    clock,
    store,
    fetcher,
    persisted,
    resets,
    failed,
    manager,
    running,
    failPersist: (v: boolean) => {
      failPersist = v;
    },
  };
}

const statusOf = (m: FederationManager, td: string) => m.status().find((s) => s.trustDomain === td)!;

describe('FederationManager across restarts', () => {
  it('enforces the persisted high-water mark when the last-known-good bundle was lost', async () => {
    // The bundle file is gone; the sequence file says 9. A peer (or whoever answers for it) now
    // serves sequence 3 with other keys: refused, nothing held, nothing persisted.
    const t = setup([{ trustDomain: 'a.test', sequenceFloor: 9n }]);
    t.fetcher.next.set('a.test', bundle('a.test', 3n, 'attacker'));
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    expect(t.store.get('a.test')).toBeUndefined();
    expect(t.persisted).toEqual([]);
    expect(statusOf(t.manager, 'a.test')).toMatchObject({
      reason: { code: 'ERR_POLICY_SEQUENCE_ROLLBACK' },
      bundleOrigin: 'none',
      sequenceFloor: 9n,
    });
    // The real next bundle (10) is accepted and raises the mark.
    t.fetcher.next.set('a.test', bundle('a.test', 10n));
    await t.clock.runNext();
    expect(t.store.get('a.test')?.sequence).toBe(10n);
    expect(statusOf(t.manager, 'a.test')).toMatchObject({ sequenceFloor: 10n, bundleOrigin: 'fetched' });
  });

  it('an unset sequence after a non-zero mark is a rollback too (1 → 0)', async () => {
    const t = setup([{ trustDomain: 'a.test', sequenceFloor: 1n }]);
    t.fetcher.next.set('a.test', bundle('a.test', 0n));
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    expect(t.store.get('a.test')).toBeUndefined();
    expect(statusOf(t.manager, 'a.test').reason?.code).toBe('ERR_POLICY_SEQUENCE_ROLLBACK');
  });

  it('an operator reset lowers the mark: the restarted sequence is then accepted', async () => {
    const t = setup([{ trustDomain: 'a.test', sequenceFloor: 9n }]);
    t.fetcher.next.set('a.test', bundle('a.test', 1n));
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    expect(t.store.get('a.test')).toBeUndefined();
    await t.manager.resetSequence('a.test');
    await t.clock.settle();
    expect(t.resets).toEqual(['a.test']);
    expect(t.store.get('a.test')?.sequence).toBe(1n);
    // …and the reset is spent: a later rollback below the new mark is refused again.
    t.fetcher.next.set('a.test', bundle('a.test', 0n, 'other'));
    await t.clock.runNext();
    expect(t.store.get('a.test')?.sequence).toBe(1n);
  });

  it('restores last-known-good bundles into the store and says where they came from', async () => {
    const t = setup([
      { trustDomain: 'a.test', bundle: bundle('a.test', 4n), origin: 'state', sequenceFloor: 4n },
      { trustDomain: 'b.test', bundle: bundle('b.test', 2n), origin: 'spire:main' },
    ]);
    t.fetcher.next.set('b.test', bundle('b.test', 1n));
    await t.manager.apply(allowlist(peer('a.test'), peer('b.test')));
    expect(t.store.get('a.test')?.sequence).toBe(4n);
    expect(statusOf(t.manager, 'a.test').bundleOrigin).toBe('state');
    expect(statusOf(t.manager, 'b.test').bundleOrigin).toBe('spire:main');
    // A restored bundle is the rollback baseline too.
    await t.clock.settle();
    expect(t.store.get('b.test')?.sequence).toBe(2n);
    expect(statusOf(t.manager, 'b.test').reason?.code).toBe('ERR_POLICY_SEQUENCE_ROLLBACK');
  });

  it('a bundle that cannot be persisted is not taken: ERR_STATE_WRITE, retried, then taken', async () => {
    const t = setup();
    t.failPersist(true);
    t.fetcher.next.set('a.test', bundle('a.test', 5n));
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    expect(t.store.get('a.test')).toBeUndefined();
    expect(t.failed).toContain('a.test:ERR_STATE_WRITE');
    expect(statusOf(t.manager, 'a.test')).toMatchObject({ reason: { code: 'ERR_STATE_WRITE' } });
    const before = t.fetcher.calls;
    t.failPersist(false);
    await t.clock.runNext();
    expect(t.fetcher.calls).toBeGreaterThan(before);
    expect(t.store.get('a.test')?.sequence).toBe(5n);
    expect(t.persisted).toEqual(['a.test@5']);
  });
});

describe('FederationManager.restore reports what it put back', () => {
  it('tells the observer (metrics export the sequence before any fetch)', async () => {
    const seen: string[] = [];
    const manager = new FederationManager({
      clock: new FakeClock(),
      fetcher: new TableFetcher(),
      store: new FederatedBundleStore(),
      random: () => 1,
      persist: async () => undefined,
      forget: async () => undefined,
      observer: { restored: (td, b, origin) => seen.push(`${td}@${b.sequence}:${origin}`) },
    });
    manager.restore([
      { trustDomain: 'a.test', bundle: bundle('a.test', 7n) },
      { trustDomain: 'b.test', bundle: bundle('b.test', 2n), origin: 'spire:main' },
      { trustDomain: 'c.test', sequenceFloor: 4n },
    ]);
    expect(seen).toEqual(['a.test@7:state', 'b.test@2:spire:main']);
  });
});
