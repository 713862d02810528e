import { afterEach, describe, expect, it } from 'vitest';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import type { Allowlist, PeerConfig } from '../../../src/engine/config/types.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { FederationManager } from '../../../src/engine/federation/manager.js';
import type { PeerFetcher, PeerFetchOutcome } from '../../../src/engine/federation/peer-updater.js';
import { FetchError, PolicyError } from '../../../src/errors.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeClock } from '../../fakes/fake-clock.js';

const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const bundle = (td: string, seq: bigint, empty = false) =>
  TrustBundle.create({
    trustDomain: TrustDomain.parse(td),
    jwtAuthorities: empty ? [] : [jwtAuthority(`k${seq}`, key)],
    sequence: seq,
    refreshHint: 60,
  });
const peer = (td: string, url = `https://${td}/`): PeerConfig => ({
  trustDomain: TrustDomain.parse(td),
  urls: [new URL(url)],
  profile: { kind: 'https_web' },
  refresh: { minIntervalSeconds: 1, maxIntervalSeconds: 300 },
  keyPolicy: {},
  targetServers: 'all',
  allowEmptyBundle: true,
});
const allowlist = (...peers: PeerConfig[]): Allowlist => ({
  peers,
  version: peers.map((p) => p.trustDomain.name).join(),
});

/** Serves, per trust domain, whatever `next` holds (a bundle, or an error to throw). */
class TableFetcher implements PeerFetcher {
  readonly next = new Map<string, TrustBundle | Error>();
  readonly urls: string[] = [];
  readonly hold = new Set<string>();
  async fetch(p: PeerConfig, opts: { signal: AbortSignal }): Promise<PeerFetchOutcome> {
    this.urls.push(p.urls[0]!.href);
    if (this.hold.has(p.trustDomain.name)) {
      await new Promise((_, reject) =>
        opts.signal.addEventListener('abort', () => reject(opts.signal.reason)),
      );
    }
    const v = this.next.get(p.trustDomain.name);
    if (!v) throw new FetchError('ERR_FETCH_CONNECT', 'nothing there');
    if (v instanceof Error) throw v;
    return { kind: 'bundle', bundle: v, url: p.urls[0]!.href, supportsLongPoll: false };
  }
}

const stops: AbortController[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s.abort();
});

function setup() {
  const clock = new FakeClock();
  const store = new FederatedBundleStore();
  const fetcher = new TableFetcher();
  const persisted: string[] = [];
  const forgotten: string[] = [];
  const events: string[] = [];
  const manager = new FederationManager({
    clock,
    fetcher,
    store,
    random: () => 1,
    evaluate: (_p, cur, cand) =>
      cur && cand.sequence < cur.sequence
        ? { accepted: false, error: new PolicyError('ERR_POLICY_SEQUENCE_ROLLBACK', 'rollback') }
        : { accepted: true, changed: !cur || cur.sequence !== cand.sequence },
    persist: async (b) => {
      persisted.push(`${b.trustDomain.name}@${b.sequence}`);
    },
    forget: async (td) => {
      forgotten.push(td);
    },
    observer: {
      revoked: (td) => events.push(`revoked:${td}`),
      stateChanged: (td, _from, to) => events.push(`${td}:${to}`),
    },
  });
  const stop = new AbortController();
  stops.push(stop);
  const running = manager.run(stop.signal);
  return { clock, store, fetcher, persisted, forgotten, events, manager, stop, running };
}

const stateOf = (m: FederationManager, td: string) => m.status().find((s) => s.trustDomain === td)?.state;

describe('FederationManager', () => {
  it('starts an updater per allowlisted peer; accepted bundles are persisted then held', async () => {
    const t = setup();
    t.fetcher.next.set('a.test', bundle('a.test', 1n));
    t.fetcher.next.set('b.test', bundle('b.test', 7n));
    expect((await t.manager.apply(allowlist(peer('a.test'), peer('b.test')))).added).toEqual([
      'a.test',
      'b.test',
    ]);
    await t.clock.settle();
    expect(t.persisted.sort()).toEqual(['a.test@1', 'b.test@7']);
    expect(t.store.get('b.test')?.sequence).toBe(7n);
    expect(stateOf(t.manager, 'a.test')).toBe('ACTIVE');
    // One entry by name, as peers() lists them.
    expect(t.manager.peer('b.test')).toBe(t.manager.peers().find((p) => p.trustDomain.name === 'b.test'));
    expect(t.manager.peer('c.test')).toBeUndefined();
  });

  it('PENDING until a first success (with the last error as reason), UNAVAILABLE after 3 failures', async () => {
    const t = setup();
    t.fetcher.hold.add('a.test');
    await t.manager.apply(allowlist(peer('a.test')));
    expect(stateOf(t.manager, 'a.test')).toBe('PENDING');
    t.fetcher.hold.delete('a.test');
    t.manager.refreshNow('a.test');
    await t.clock.settle();
    expect(t.manager.status()[0]).toMatchObject({ state: 'PENDING', reason: { code: 'ERR_FETCH_CONNECT' } });
    await t.clock.runNext();
    await t.clock.runNext();
    expect(t.manager.status()[0]).toMatchObject({ state: 'UNAVAILABLE', consecutiveFailures: 3 });

    t.fetcher.next.set('a.test', bundle('a.test', 1n));
    await t.clock.runNext();
    expect(stateOf(t.manager, 'a.test')).toBe('ACTIVE');
  });

  it('counts the peers whose first bundle is on its way (a success, a refusal or a second failure ends it)', async () => {
    const t = setup();
    for (const td of ['a.test', 'b.test', 'c.test']) t.fetcher.hold.add(td);
    t.fetcher.next.set('a.test', bundle('a.test', 1n));
    await t.manager.apply(allowlist(peer('a.test'), peer('b.test'), peer('c.test')));
    await t.clock.settle();
    expect(t.manager.awaitingFirstOutcome()).toBe(3);
    t.fetcher.hold.delete('a.test');
    t.manager.refreshNow('a.test');
    await t.clock.settle();
    expect(t.manager.awaitingFirstOutcome()).toBe(2);
    t.fetcher.hold.delete('b.test'); // nothing to serve: the first fetch fails…
    t.manager.refreshNow('b.test');
    await t.clock.settle();
    expect(t.manager.awaitingFirstOutcome()).toBe(2); // …its quick retry may still bring it
    t.manager.refreshNow('b.test');
    await t.clock.settle();
    expect(t.manager.awaitingFirstOutcome()).toBe(1); // a second failure: really down
    expect(stateOf(t.manager, 'b.test')).toBe('PENDING');
    t.fetcher.next.set('c.test', new PolicyError('ERR_POLICY_SEQUENCE_ROLLBACK', 'refused'));
    t.fetcher.hold.delete('c.test');
    t.manager.refreshNow('c.test');
    await t.clock.settle();
    expect(t.manager.awaitingFirstOutcome()).toBe(0);
  });

  it('a peer that goes down keeps its bundle: FAILING while its bundle is fresh, STALE (still trusted) after', async () => {
    const t = setup();
    t.fetcher.next.set('a.test', bundle('a.test', 1n));
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    t.fetcher.next.set('a.test', new FetchError('ERR_FETCH_STATUS', 'unexpected status 503'));
    await t.clock.runNext();
    await t.clock.runNext();
    expect(t.manager.status()[0]).toMatchObject({ state: 'ACTIVE', consecutiveFailures: 2 });
    await t.clock.runNext();
    expect(t.manager.status()[0]).toMatchObject({ state: 'FAILING', reason: { code: 'ERR_FETCH_STATUS' } });
    await t.clock.advance(181_000);
    expect(t.manager.status()[0]).toMatchObject({
      state: 'STALE',
      reason: { code: 'ERR_PEER_STALE' },
      sequence: 1n,
    });
    expect(t.store.get('a.test')?.sequence).toBe(1n);
  });

  it('reports STALE after 3 × the hint without a successful answer, keeping the bundle', async () => {
    const t = setup();
    t.fetcher.next.set('a.test', bundle('a.test', 1n));
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    // From now on every request hangs (a peer that accepts connections and never answers).
    t.fetcher.hold.add('a.test');
    await t.clock.advance(179_000);
    expect(stateOf(t.manager, 'a.test')).toBe('ACTIVE');
    await t.clock.advance(2_000);
    expect(t.manager.status()[0]).toMatchObject({
      state: 'STALE',
      reason: { code: 'ERR_PEER_STALE' },
      sequence: 1n,
    });
    expect(t.store.get('a.test')?.sequence).toBe(1n);
    expect(t.events).toContain('a.test:STALE');
  });

  it('a refused bundle never replaces the held one', async () => {
    const t = setup();
    t.fetcher.next.set('a.test', bundle('a.test', 5n));
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    t.fetcher.next.set('a.test', bundle('a.test', 4n));
    await t.clock.runNext();
    expect(t.store.get('a.test')?.sequence).toBe(5n);
    expect(t.manager.status()[0]!.reason?.code).toBe('ERR_POLICY_SEQUENCE_ROLLBACK');
  });

  it('removing a peer from the allowlist revokes it: store, persisted state, status', async () => {
    const t = setup();
    t.fetcher.next.set('a.test', bundle('a.test', 1n));
    t.fetcher.next.set('b.test', bundle('b.test', 1n));
    await t.manager.apply(allowlist(peer('a.test'), peer('b.test')));
    await t.clock.settle();
    const r = await t.manager.apply(allowlist(peer('b.test')));
    expect(r.removed).toEqual(['a.test']);
    expect(t.store.get('a.test')).toBeUndefined();
    expect(t.store.get('b.test')).toBeDefined();
    expect(t.forgotten).toEqual(['a.test']);
    expect(t.events).toContain('revoked:a.test');
    expect(t.manager.status().find((s) => s.trustDomain === 'a.test')).toMatchObject({
      state: 'REVOKED',
      reason: { code: 'ERR_PEER_REMOVED' },
    });
  });

  it('a changed entry is applied at once; an unchanged one is left running', async () => {
    const t = setup();
    t.fetcher.next.set('a.test', bundle('a.test', 1n));
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    expect((await t.manager.apply(allowlist(peer('a.test')))).changed).toEqual([]);
    const r = await t.manager.apply(allowlist(peer('a.test', 'https://mirror.a.test/')));
    expect(r.changed).toEqual(['a.test']);
    await t.clock.settle();
    expect(t.fetcher.urls.at(-1)).toBe('https://mirror.a.test/');
  });

  it('an accepted empty bundle revokes every SVID of the peer: REVOKED with a reason', async () => {
    const t = setup();
    t.fetcher.next.set('a.test', bundle('a.test', 2n, true));
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    expect(t.manager.status()[0]).toMatchObject({
      state: 'REVOKED',
      reason: { code: 'ERR_PEER_REVOKED_ALL_KEYS' },
    });
  });

  it('stops every updater on abort', async () => {
    const t = setup();
    await t.manager.apply(allowlist(peer('a.test')));
    await t.clock.settle();
    t.stop.abort();
    await expect(t.running).resolves.toBeUndefined();
  });
});
