import { afterEach, describe, expect, it } from 'vitest';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import type { PeerConfig } from '../../../src/engine/config/types.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { FederationManager } from '../../../src/engine/federation/manager.js';
import type { PeerFetcher, PeerFetchOutcome } from '../../../src/engine/federation/peer-updater.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeClock } from '../../fakes/fake-clock.js';

// Issue 16 item 11: a peer advertising a huge spiffe_refresh_hint must still be reported STALE
// when it goes silent. The manager sizes the stale window from effectiveRefreshHint, which now
// caps the hint at one day by default: STALE after at most 3 days.

const DAY = 86_400_000;
const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const peer: PeerConfig = {
  trustDomain: TrustDomain.parse('sly.test'),
  urls: [new URL('https://sly.test/')],
  profile: { kind: 'https_web' },
  refresh: { minIntervalSeconds: 1, maxIntervalSeconds: 300 },
  keyPolicy: {},
  targetServers: 'all',
  allowEmptyBundle: false,
};

/** Answers once with a bundle whose hint is ten years, then hangs every request (silent peer). */
class SilentAfterOne implements PeerFetcher {
  calls = 0;
  async fetch(p: PeerConfig, opts: { signal: AbortSignal }): Promise<PeerFetchOutcome> {
    if (this.calls++ > 0) {
      await new Promise((_, reject) =>
        opts.signal.addEventListener('abort', () => reject(opts.signal.reason)),
      );
    }
    const bundle = TrustBundle.create({
      trustDomain: p.trustDomain,
      jwtAuthorities: [jwtAuthority('k1', key)],
      sequence: 1n,
      refreshHint: 10 * 365 * 86_400,
    });
    return { kind: 'bundle', bundle, url: p.urls[0]!.href, supportsLongPoll: false };
  }
}

const stops: AbortController[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s.abort();
});

describe('FederationManager: the refresh hint behind the stale window is capped', () => {
  it('a silent peer with a ten-year refresh hint is STALE after 3 days, not 30 years', async () => {
    const clock = new FakeClock();
    const manager = new FederationManager({
      clock,
      fetcher: new SilentAfterOne(),
      store: new FederatedBundleStore(),
      random: () => 1,
      evaluate: () => ({ accepted: true, changed: true }),
      persist: async () => {},
      forget: async () => {},
    });
    const stop = new AbortController();
    stops.push(stop);
    void manager.run(stop.signal);
    await manager.apply({ peers: [peer], version: 'v1' });
    await clock.settle();
    expect(manager.status()[0]).toMatchObject({ state: 'ACTIVE', refreshHint: 10 * 365 * 86_400 });
    await clock.advance(3 * DAY - 60_000);
    expect(manager.status()[0]?.state).toBe('ACTIVE');
    await clock.advance(120_000);
    expect(manager.status()[0]).toMatchObject({ state: 'STALE', reason: { code: 'ERR_PEER_STALE' } });
  });
});
