import { afterEach, describe, expect, it } from 'vitest';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import { diffAllowlists } from '../../../src/engine/config/allowlist-diff.js';
import type { PeerConfig } from '../../../src/engine/config/types.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { FederationManager } from '../../../src/engine/federation/manager.js';
import type { PeerFetcher, PeerFetchOutcome } from '../../../src/engine/federation/peer-updater.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeClock } from '../../fakes/fake-clock.js';

// Issue 12 items 3 and 4: relay and oidcIssuer decide what the broker publishes, not how it
// fetches. A hot reload that only toggles them must reach manager.peers() (read by the relay and
// the OIDC listener) at once, without restarting the peer's updater.

const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const base: PeerConfig = {
  trustDomain: TrustDomain.parse('partner.test'),
  urls: [new URL('https://partner.test/')],
  profile: { kind: 'https_web' },
  refresh: { minIntervalSeconds: 1, maxIntervalSeconds: 300 },
  keyPolicy: {},
  targetServers: 'all',
  allowEmptyBundle: false,
};

class CountingFetcher implements PeerFetcher {
  calls = 0;
  async fetch(p: PeerConfig): Promise<PeerFetchOutcome> {
    this.calls++;
    const bundle = TrustBundle.create({
      trustDomain: p.trustDomain,
      jwtAuthorities: [jwtAuthority('k1', key)],
      sequence: 1n,
    });
    return { kind: 'bundle', bundle, url: p.urls[0]!.href, supportsLongPoll: false };
  }
}

const stops: AbortController[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s.abort();
});

describe('FederationManager: publishing settings follow a reload without touching the updater', () => {
  it('relay and oidcIssuer reach peers() at once and count as a change in the allowlist diff', async () => {
    const clock = new FakeClock();
    const fetcher = new CountingFetcher();
    const manager = new FederationManager({
      clock,
      fetcher,
      store: new FederatedBundleStore(),
      random: () => 1,
      evaluate: () => ({ accepted: true, changed: true }),
      persist: async () => {},
      forget: async () => {},
    });
    const stop = new AbortController();
    stops.push(stop);
    void manager.run(stop.signal);
    await manager.apply({ peers: [base], version: 'v1' });
    await clock.settle();
    const calls = fetcher.calls;
    const relayed: PeerConfig = { ...base, relay: true, oidcIssuer: 'https://oidc.partner.test' };
    const result = await manager.apply({ peers: [relayed], version: 'v2' });
    await clock.settle();
    expect(result.changed).toEqual([]);
    expect(manager.peers()[0]).toMatchObject({ relay: true, oidcIssuer: 'https://oidc.partner.test' });
    expect(fetcher.calls).toBe(calls);
    expect(
      diffAllowlists({ peers: [base], version: 'v1' }, { peers: [relayed], version: 'v2' }).changed.map(
        (c) => c.after.trustDomain.name,
      ),
    ).toEqual(['partner.test']);
    await manager.apply({ peers: [base], version: 'v3' });
    expect(manager.peers()[0]?.relay).toBeUndefined();
  });
});
