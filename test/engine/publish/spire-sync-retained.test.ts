import { afterEach, describe, expect, it } from 'vitest';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import { type ManagedSetStore, SpireServerSync } from '../../../src/engine/publish/spire-sync.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { FakeSpireApi } from '../../fakes/fake-spire-api.js';

// Issue 16 item 2 and a mutation-test survivor: a restart that lost a peer's last-known-good
// bundle while the peer is down must not revoke it from SPIRE; a trust domain SPIRE federates
// with itself is never deleted, even once it leaves the allowlist.

const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const bundle = (td: string, seq: bigint) =>
  TrustBundle.create({
    trustDomain: TrustDomain.parse(td),
    jwtAuthorities: [jwtAuthority(`k${seq}`, key)],
    sequence: seq,
  });

class MemoryManaged implements ManagedSetStore {
  constructor(readonly saved = new Map<string, string[]>()) {}
  async load(server: string): Promise<Set<string>> {
    return new Set(this.saved.get(server) ?? []);
  }
  async save(server: string, managed: ReadonlySet<string>): Promise<void> {
    this.saved.set(server, [...managed].sort());
  }
}

const stops: AbortController[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s.abort();
});

function run(sync: SpireServerSync) {
  const stop = new AbortController();
  stops.push(stop);
  return sync.run(stop.signal);
}

describe('SpireServerSync: retained trust domains', () => {
  it('never revokes an allowlisted peer whose bundle is not held; revokes once it leaves the allowlist', async () => {
    const clock = new FakeClock();
    const api = new FakeSpireApi();
    // The previous run wrote a.test and recorded it as managed; this run has no bundle for it.
    api.bundles.set('a.test', bundle('a.test', 4n));
    const managed = new MemoryManaged(new Map([['spire-1', ['a.test']]]));
    const retained = new Set(['a.test']);
    const deleted: string[] = [];
    const sync = new SpireServerSync('spire-1', {
      clock,
      api,
      managed,
      desired: () => new Map(),
      retained: () => retained,
      enforce: true,
      observer: { deleted: (_s, td, reason) => deleted.push(`${td}:${reason}`) },
    });
    run(sync);
    await clock.advance(10);
    await clock.advance(31_000); // and a periodic resync
    expect(api.bundles.get('a.test')?.sequence).toBe(4n);
    expect(deleted).toEqual([]);
    expect(sync.status().drift).toEqual([]);
    const plan = await sync.plan();
    expect(plan.retained).toEqual(['a.test']);
    expect(plan.revoke).toEqual([]);
    // The operator removes it from the allowlist: now it is revoked.
    retained.clear();
    sync.trigger();
    await clock.advance(10);
    expect(api.bundles.has('a.test')).toBe(false);
    expect(deleted).toEqual(['a.test:revoked']);
  });

  it('never deletes SPIRE’s own federation relationship, even after it leaves the allowlist', async () => {
    const clock = new FakeClock();
    const api = new FakeSpireApi();
    const managed = new MemoryManaged();
    const desired = new Map([['a.test', bundle('a.test', 1n)]]);
    const sync = new SpireServerSync('spire-1', {
      clock,
      api,
      managed,
      desired: () => desired,
      enforce: true,
    });
    run(sync);
    await clock.advance(10);
    expect(managed.saved.get('spire-1')).toEqual(['a.test']);
    // SPIRE now federates with a.test itself (its own relationship, its own bundle)…
    api.relationships.add('a.test');
    api.bundles.set('a.test', bundle('a.test', 9n));
    // …and the trust domain leaves the broker's allowlist.
    desired.clear();
    sync.trigger();
    await clock.advance(10);
    await clock.advance(31_000);
    expect(api.count('delete')).toBe(0);
    expect(api.bundles.get('a.test')?.sequence).toBe(9n);
  });
});
