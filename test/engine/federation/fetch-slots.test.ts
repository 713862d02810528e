import { describe, expect, it } from 'vitest';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import type { PeerConfig } from '../../../src/engine/config/types.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { FetchSlots } from '../../../src/engine/federation/fetch-slots.js';
import { FederationManager } from '../../../src/engine/federation/manager.js';
import type { PeerFetcher, PeerFetchOutcome } from '../../../src/engine/federation/peer-updater.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeClock } from '../../fakes/fake-clock.js';

const tick = () => new Promise((r) => setImmediate(r));

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('FetchSlots', () => {
  it('runs at most size at once, the rest in arrival order', async () => {
    const slots = new FetchSlots(2);
    const started: number[] = [];
    const gates = Array.from({ length: 5 }, () => deferred());
    const runs = gates.map((g, i) =>
      slots.run(async () => {
        started.push(i);
        await g.promise;
        return i;
      }),
    );
    await tick();
    expect(started).toEqual([0, 1]);
    expect(slots.waiting).toBe(3);
    gates[1]!.resolve();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    for (const g of gates) g.resolve();
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3, 4]);
    expect(slots.inUse).toBe(0);
  });

  it('frees the slot when the work fails, and a waiter whose signal aborts leaves the queue unrun', async () => {
    const slots = new FetchSlots(1);
    await expect(slots.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(slots.inUse).toBe(0);
    const hold = deferred();
    const first = slots.run(() => hold.promise);
    const stop = new AbortController();
    let ran = false;
    const second = slots.run(async () => {
      ran = true;
    }, stop.signal);
    await tick();
    stop.abort(new Error('stopped'));
    await expect(second).rejects.toThrow('stopped');
    expect(slots.waiting).toBe(0);
    hold.resolve();
    await first;
    expect(ran).toBe(false);
    expect(slots.inUse).toBe(0);
    expect(() => new FetchSlots(0)).toThrow(TypeError);
  });
});

describe('FederationManager bounds concurrent fetches', () => {
  it('a cold start of 40 peers keeps at most maxConcurrentFetches one-shot fetches in flight; long-polls are not counted', async () => {
    const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    let inFlight = 0;
    let most = 0;
    let longPolls = 0;
    const release: (() => void)[] = [];
    const fetcher: PeerFetcher = {
      async fetch(p, opts): Promise<PeerFetchOutcome> {
        if (opts.waitSeconds !== undefined) {
          longPolls++;
          await new Promise((_, reject) =>
            opts.signal.addEventListener('abort', () => reject(opts.signal.reason)),
          );
        }
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise<void>((r) => release.push(r));
        inFlight--;
        const bundle = TrustBundle.create({
          trustDomain: p.trustDomain,
          jwtAuthorities: [jwtAuthority('k', key)],
          sequence: 1n,
        });
        return { kind: 'bundle', bundle, url: p.urls[0]!.href, etag: '"1"', supportsLongPoll: true };
      },
    };
    const peers: PeerConfig[] = Array.from({ length: 40 }, (_, i) => ({
      trustDomain: TrustDomain.parse(`p${i}.test`),
      urls: [new URL(`https://p${i}.test/`)],
      profile: { kind: 'https_web' },
      refresh: { minIntervalSeconds: 1, maxIntervalSeconds: 300 },
      keyPolicy: {},
      targetServers: 'all',
      allowEmptyBundle: false,
    }));
    const clock = new FakeClock();
    const store = new FederatedBundleStore();
    const manager = new FederationManager({
      clock,
      fetcher,
      store,
      evaluate: (_p, cur) => ({ accepted: true, changed: cur === undefined }),
      persist: async () => undefined,
      forget: async () => undefined,
      maxConcurrentFetches: 8,
    });
    await manager.apply({ peers, version: 'v1' });
    const stop = new AbortController();
    const running = manager.run(stop.signal);
    for (let i = 0; i < 200 && store.bundles().length < 40; i++) {
      await tick();
      for (const r of release.splice(0)) r();
    }
    expect(store.bundles()).toHaveLength(40);
    expect(most).toBe(8);
    // Then every peer holds a long-poll at the same time: 40 > 8, they do not take slots.
    await clock.advance(1000);
    for (let i = 0; i < 20 && longPolls < 40; i++) await tick();
    expect(longPolls).toBe(40);
    stop.abort();
    await running;
  });
});
