import { afterEach, describe, expect, it } from 'vitest';
import { createCa } from '../../../src/adapters/pki/index.js';
import { bundleToWire } from '../../../src/adapters/spire/convert.js';
import { loadSpireApi } from '../../../src/adapters/spire/proto.js';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import {
  bundleWireSizeEstimate,
  DEFAULT_MAX_BATCH_BYTES,
  type ManagedSetStore,
  SpireServerSync,
  type SpireSyncDeps,
  sizedBatches,
} from '../../../src/engine/publish/spire-sync.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { FakeSpireApi } from '../../fakes/fake-spire-api.js';

const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
function bundle(td: string, seq: bigint): TrustBundle {
  return TrustBundle.create({
    trustDomain: TrustDomain.parse(td),
    jwtAuthorities: [jwtAuthority(`k${seq}`, key)],
    sequence: seq,
    refreshHint: 300,
  });
}

class MemoryManaged implements ManagedSetStore {
  readonly saved = new Map<string, string[]>();
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

function setup(over: Partial<SpireSyncDeps> = {}) {
  const clock = new FakeClock();
  const api = new FakeSpireApi();
  const managed = new MemoryManaged();
  const desired = new Map<string, TrustBundle>();
  const events: string[] = [];
  const sync = new SpireServerSync('spire-1', {
    clock,
    api,
    managed,
    desired: () => desired,
    observer: {
      drift: (_s, tds) => events.push(`drift:${tds.join(',')}`),
      conflict: (_s, tds) => events.push(`conflict:${tds.join(',')}`),
      deleted: (_s, td, reason, r) => events.push(`deleted:${td}:${reason}:${r.ok}`),
    },
    ...over,
  });
  const stop = new AbortController();
  stops.push(stop);
  const running = sync.run(stop.signal);
  return { clock, api, managed, desired, events, sync, stop, running };
}

describe('SpireServerSync', () => {
  it('writes every desired bundle in one BatchSetFederatedBundle and records ownership', async () => {
    const t = setup();
    t.desired.set('a.test', bundle('a.test', 1n));
    t.desired.set('b.test', bundle('b.test', 1n));
    t.sync.trigger();
    await t.clock.advance(10);
    expect(t.api.calls.filter((c) => c.method === 'set')).toEqual([
      { method: 'set', trustDomains: ['a.test', 'b.test'] },
    ]);
    expect(t.managed.saved.get('spire-1')).toEqual(['a.test', 'b.test']);
    expect(t.sync.status().trustDomains.get('a.test')).toEqual({ synced: true, sequence: '1' });
  });

  it('writes nothing when the server already holds the desired bundles (resync is level-triggered)', async () => {
    const t = setup({ resyncMs: 1000 });
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    expect(t.api.count('set')).toBe(1);
    await t.clock.advance(5000);
    expect(t.api.count('list')).toBeGreaterThan(3);
    expect(t.api.count('set')).toBe(1);
  });

  it('coalesces several changes into one batch carrying only the changed bundles', async () => {
    const t = setup();
    for (const td of ['a.test', 'b.test', 'c.test']) t.desired.set(td, bundle(td, 1n));
    await t.clock.advance(10);
    t.desired.set('a.test', bundle('a.test', 2n));
    t.sync.trigger();
    t.desired.set('c.test', bundle('c.test', 2n));
    t.sync.trigger();
    await t.clock.advance(10);
    const sets = t.api.calls.filter((c) => c.method === 'set');
    expect(sets).toHaveLength(2);
    expect(sets[1]!.trustDomains).toEqual(['a.test', 'c.test']);
    expect(t.api.bundles.get('c.test')!.sequence).toBe(2n);
  });

  it('a burst of changes spread over time goes out in ONE batch once the burst is over', async () => {
    const t = setup();
    const tds = Array.from({ length: 20 }, (_, i) => `p${i}.test`);
    for (const td of tds) t.desired.set(td, bundle(td, 1n));
    await t.clock.advance(10);
    expect(t.api.count('set')).toBe(1);
    // 20 peers rotate; their accepts land 3 ms apart (persisting each takes a moment): 57 ms in all,
    // far longer than the 5 ms quiet period, but never 5 ms without a change.
    for (const td of tds) {
      t.desired.set(td, bundle(td, 2n));
      t.sync.trigger();
      await t.clock.advance(3);
    }
    await t.clock.advance(20);
    const sets = t.api.calls.filter((c) => c.method === 'set');
    expect(sets).toHaveLength(2);
    expect(sets[1]!.trustDomains).toEqual(tds);
  });

  it('a trigger during a pass waits for its burst too, and a never-ending stream is written at least every 250 ms', async () => {
    const t = setup({ maxDebounceMs: 250 });
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    // A change every 2 ms for 1 s: without the bound nothing would ever be written.
    let seq = 2n;
    for (let ms = 0; ms < 1000; ms += 2) {
      t.desired.set('a.test', bundle('a.test', seq++));
      t.sync.trigger();
      await t.clock.advance(2);
    }
    const sets = t.api.count('set');
    expect(sets).toBeGreaterThanOrEqual(1 + 3);
    expect(sets).toBeLessThanOrEqual(1 + 5);
    await t.clock.advance(20);
    expect(t.api.bundles.get('a.test')!.sequence).toBe(seq - 1n);
  });

  it('splits a change too large for one gRPC message into BatchSets under the size budget', async () => {
    const one = bundleWireSizeEstimate(bundle('p0.test', 1n));
    const t = setup({ maxBatchBytes: Math.floor(one * 2.5) });
    const tds = ['p0.test', 'p1.test', 'p2.test', 'p3.test', 'p4.test'];
    for (const td of tds) t.desired.set(td, bundle(td, 1n));
    t.sync.trigger();
    await t.clock.advance(10);
    const sets = t.api.calls.filter((c) => c.method === 'set').map((c) => c.trustDomains);
    expect(sets).toEqual([['p0.test', 'p1.test'], ['p2.test', 'p3.test'], ['p4.test']]);
    expect([...t.api.bundles.keys()].sort()).toEqual(tds);
    expect(t.sync.status().trustDomains.get('p4.test')).toEqual({ synced: true, sequence: '1' });
  });

  it('revokes a bundle it manages once it is no longer desired, and confirms by reading back', async () => {
    const t = setup();
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    t.desired.delete('a.test');
    t.sync.trigger();
    await t.clock.advance(10);
    expect(t.api.bundles.has('a.test')).toBe(false);
    expect(t.events).toContain('deleted:a.test:revoked:true');
    expect(t.api.calls.find((c) => c.method === 'delete')!.mode).toBe('restrict');
    expect(t.managed.saved.get('spire-1')).toEqual([]);
  });

  it('reports a revocation that restrict mode blocks, keeps ownership and retries', async () => {
    const t = setup();
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    t.api.federatedByEntries.add('a.test');
    t.desired.delete('a.test');
    t.sync.trigger();
    await t.clock.advance(10);
    const st = t.sync.status();
    expect(st.trustDomains.get('a.test')?.error?.code).toBe('ERR_SPIRE_REVOCATION_BLOCKED');
    expect(t.managed.saved.get('spire-1')).toEqual(['a.test']);
    t.api.federatedByEntries.delete('a.test');
    await t.clock.advance(2000);
    expect(t.api.bundles.has('a.test')).toBe(false);
  });

  it('never deletes bundles it does not manage: drift is reported; deleted only with enforce', async () => {
    const t = setup();
    t.api.bundles.set('stranger.test', bundle('stranger.test', 1n));
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    expect(t.api.bundles.has('stranger.test')).toBe(true);
    expect(t.sync.status().drift).toEqual(['stranger.test']);
    expect(t.events).toContain('drift:stranger.test');

    const e = setup({ enforce: true });
    e.api.bundles.set('stranger.test', bundle('stranger.test', 1n));
    await e.clock.advance(10);
    expect(e.api.bundles.has('stranger.test')).toBe(false);
    expect(e.events).toContain('deleted:stranger.test:drift:true');
  });

  it('leaves trust domains that SPIRE federates with itself alone and reports the conflict', async () => {
    const t = setup();
    t.api.relationships.add('a.test');
    t.api.bundles.set('a.test', bundle('a.test', 9n));
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    expect(t.api.count('set')).toBe(0);
    expect(t.api.bundles.get('a.test')!.sequence).toBe(9n);
    expect(t.sync.status().conflicts).toEqual(['a.test']);
    expect(t.sync.status().drift).toEqual([]);
    expect(t.events).toContain('conflict:a.test');
  });

  it('retries a failed item and a server that was down, with backoff, then converges', async () => {
    const t = setup({ retryBaseMs: 100, retryMaxMs: 1000 });
    t.api.failNextSet.add('a.test');
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    expect(t.sync.status().trustDomains.get('a.test')?.synced).toBe(false);
    await t.clock.advance(200);
    expect(t.api.bundles.get('a.test')?.sequence).toBe(1n);

    t.api.down = true;
    t.desired.set('a.test', bundle('a.test', 2n));
    t.sync.trigger();
    await t.clock.advance(10);
    expect(t.sync.status().reachable).toBe(false);
    expect(t.sync.status().lastError?.code).toBe('ERR_SPIRE_UNAVAILABLE');
    await t.clock.advance(5000);
    t.api.down = false;
    await t.clock.advance(1100);
    expect(t.api.bundles.get('a.test')?.sequence).toBe(2n);
    expect(t.sync.status().reachable).toBe(true);
  });

  it('one server down never blocks another', async () => {
    const a = setup();
    const b = setup();
    a.api.down = true;
    a.desired.set('p.test', bundle('p.test', 1n));
    b.desired.set('p.test', bundle('p.test', 1n));
    await Promise.all([a.clock.advance(10), b.clock.advance(10)]);
    expect(b.api.bundles.has('p.test')).toBe(true);
    expect(a.api.bundles.has('p.test')).toBe(false);
  });

  it('stops cleanly on abort', async () => {
    const t = setup();
    await t.clock.advance(10);
    t.stop.abort();
    await expect(t.running).resolves.toBeUndefined();
  });
});

describe('SpireServerSync.plan', () => {
  it('says what a reconcile would do, changing nothing', async () => {
    const clock = new FakeClock();
    const api = new FakeSpireApi();
    const managed = new MemoryManaged();
    managed.saved.set('s', ['gone.test', 'revoked.test']);
    api.bundles.set('same.test', bundle('same.test', 1n));
    api.bundles.set('old.test', bundle('old.test', 1n));
    api.bundles.set('revoked.test', bundle('revoked.test', 1n));
    api.bundles.set('stranger.test', bundle('stranger.test', 1n));
    api.bundles.set('theirs.test', bundle('theirs.test', 1n));
    api.relationships.add('theirs.test');
    const desired = new Map([
      ['same.test', bundle('same.test', 1n)],
      ['old.test', bundle('old.test', 2n)],
      ['new.test', bundle('new.test', 1n)],
      ['theirs.test', bundle('theirs.test', 5n)],
    ]);
    const sync = new SpireServerSync('s', { clock, api, managed, desired: () => desired });
    const plan = await sync.plan();
    expect([...plan.inSync.keys()]).toEqual(['same.test']);
    expect(plan.toSet.map((c) => [c.bundle.trustDomain.name, c.current?.sequence])).toEqual([
      ['old.test', 1n],
      ['new.test', undefined],
    ]);
    expect(plan.revoke).toEqual(['revoked.test']);
    expect(plan.alreadyGone).toEqual(['gone.test']);
    expect(plan.drift).toEqual(['stranger.test']);
    expect(plan.conflicts).toEqual(['theirs.test']);
    expect(api.calls.filter((c) => c.method !== 'list')).toEqual([]);
    expect(api.bundles.get('old.test')!.sequence).toBe(1n);
  });
});

describe('BatchSet sizing against the gRPC message limit', () => {
  it('the estimate never undercounts the encoded request, and a default batch stays under 4 MiB', async () => {
    const td = TrustDomain.parse('p0.fleet.test');
    const ca = await createCa({ trustDomain: td, notBefore: new Date(0), notAfter: new Date(2 ** 41) });
    const jwt = [jwtAuthority('p0-k1', key), jwtAuthority('p0-k2', key)];
    const b = TrustBundle.create({
      trustDomain: td,
      x509Authorities: [ca.der],
      jwtAuthorities: jwt,
      sequence: 12n,
      refreshHint: 300,
    });
    const encode = loadSpireApi().bundle.BatchSetFederatedBundle!.requestSerialize;
    const encoded = (bs: readonly TrustBundle[]) => encode({ bundle: bs.map(bundleToWire) }).length;
    expect(bundleWireSizeEstimate(b)).toBeGreaterThanOrEqual(encoded([b]));
    // 1,000 such peers change at once: one call. 10,000 (7 MiB): split, every part under 4 MiB.
    expect(sizedBatches(Array(1000).fill(b), DEFAULT_MAX_BATCH_BYTES)).toHaveLength(1);
    const parts = sizedBatches(Array(10_000).fill(b), DEFAULT_MAX_BATCH_BYTES);
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.flat()).toHaveLength(10_000);
    for (const p of parts) expect(encoded(p)).toBeLessThan(4 * 1024 * 1024);
  });

  it('a single bundle larger than the budget still goes out, alone', () => {
    const b = bundle('big.test', 1n);
    expect(sizedBatches([b, b], 1)).toEqual([[b], [b]]);
  });
});

/** A fake server that also answers the sequence-only list. */
class SequenceFakeApi extends FakeSpireApi {
  failSequences = false;
  async listFederatedBundleSequences(): Promise<Map<string, bigint>> {
    this.calls.push({ method: 'sequences', trustDomains: [] });
    if (this.failSequences) throw new Error('unavailable');
    return new Map([...this.bundles].map(([td, b]) => [td, b.sequence]));
  }
}

describe('SpireServerSync periodic check (sequence-only list)', () => {
  function checked(over: Partial<SpireSyncDeps> = {}) {
    const api = new SequenceFakeApi();
    return { ...setup({ api, resyncMs: 1000, fullResyncEvery: 5, ...over }), api };
  }

  it('a quiet period costs a sequence-only list; every fullResyncEvery-th period is a full pass', async () => {
    const t = checked();
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    expect(t.api.count('list')).toBe(1);
    for (let i = 0; i < 4; i++) await t.clock.advance(1000);
    expect(t.api.count('sequences')).toBe(4);
    expect(t.api.count('list')).toBe(1);
    await t.clock.advance(1000); // the 5th period
    expect(t.api.count('list')).toBe(2);
    expect(t.api.count('set')).toBe(1);
  });

  it('a bundle deleted by hand is rewritten at the next period', async () => {
    const t = checked();
    t.desired.set('a.test', bundle('a.test', 1n));
    t.desired.set('b.test', bundle('b.test', 1n));
    await t.clock.advance(10);
    t.api.bundles.delete('b.test');
    await t.clock.advance(1000);
    expect(t.api.count('list')).toBe(2);
    expect(t.api.calls.filter((c) => c.method === 'set').at(-1)!.trustDomains).toEqual(['b.test']);
    expect(t.api.bundles.get('b.test')?.sequence).toBe(1n);
  });

  it('content edited under the same sequence is repaired by the periodic full pass', async () => {
    const t = checked();
    const wanted = bundle('a.test', 7n);
    t.desired.set('a.test', wanted);
    await t.clock.advance(10);
    const forged = TrustBundle.create({
      trustDomain: TrustDomain.parse('a.test'),
      jwtAuthorities: [jwtAuthority('forged', key)],
      sequence: 7n,
      refreshHint: 300,
    });
    t.api.bundles.set('a.test', forged);
    for (let i = 0; i < 4; i++) await t.clock.advance(1000);
    expect(t.api.bundles.get('a.test')).toBe(forged); // invisible to the sequence check
    await t.clock.advance(1000);
    expect(t.api.bundles.get('a.test')).toBe(wanted);
  });

  it('a new SPIRE federation relationship or a failed check runs a full pass', async () => {
    const t = checked();
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    t.api.relationships.add('a.test');
    await t.clock.advance(1000);
    expect(t.api.count('list')).toBe(2);
    expect(t.events).toContain('conflict:a.test');

    t.api.failSequences = true;
    await t.clock.advance(1000);
    expect(t.api.count('list')).toBe(3);
  });

  it('without the sequence-only list every period is a full pass', async () => {
    const t = setup({ resyncMs: 1000, fullResyncEvery: 5 });
    t.desired.set('a.test', bundle('a.test', 1n));
    await t.clock.advance(10);
    for (let i = 0; i < 3; i++) await t.clock.advance(1000);
    expect(t.api.count('list')).toBe(4);
  });
});

describe('SpireServerSync cold start (settling)', () => {
  it('holds writes while peers await their first fetch, then writes them in one batch', async () => {
    let settling = true;
    const t = setup({ settling: () => settling, maxSettleMs: 30_000 });
    t.desired.set('lkg.test', bundle('lkg.test', 1n));
    await t.clock.advance(10);
    // The first pass (last-known-good bundles) is not held.
    expect(t.api.count('set')).toBe(1);
    for (let i = 0; i < 40; i++) {
      t.desired.set(`p${i}.test`, bundle(`p${i}.test`, 1n));
      t.sync.trigger();
      await t.clock.advance(300); // slower than the 250 ms coalescing bound
    }
    expect(t.api.count('set')).toBe(1);
    settling = false;
    await t.clock.advance(100);
    expect(t.api.count('set')).toBe(2);
    expect(t.api.calls.filter((c) => c.method === 'set')[1]!.trustDomains).toHaveLength(40);
  });

  it('never holds a write longer than maxSettleMs', async () => {
    const t = setup({ settling: () => true, maxSettleMs: 2_000 });
    await t.clock.advance(10);
    t.desired.set('a.test', bundle('a.test', 1n));
    t.sync.trigger();
    await t.clock.advance(1_900);
    expect(t.api.count('set')).toBe(0);
    await t.clock.advance(200);
    expect(t.api.count('set')).toBe(1);
  });
});

describe('SpireServerSync cold start batches', () => {
  it('while settling, writes as soon as a full batch of changes has gathered', async () => {
    const t = setup({ settling: () => true, maxSettleMs: 60_000, settleBatch: 10 });
    await t.clock.advance(10);
    for (let i = 0; i < 25; i++) {
      t.desired.set(`p${i}.test`, bundle(`p${i}.test`, 1n));
      t.sync.trigger();
      await t.clock.advance(100);
    }
    // 25 changes, 100 ms apart: a batch at the 10th and one at the 20th, the rest still held.
    const sets = t.api.calls.filter((c) => c.method === 'set').map((c) => c.trustDomains.length);
    expect(sets).toEqual([10, 10]);
    await t.clock.advance(60_000);
    expect(t.api.calls.filter((c) => c.method === 'set').map((c) => c.trustDomains.length)).toEqual([
      10, 10, 5,
    ]);
  });
});
