import { describe, expect, it } from 'vitest';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import type { Sink } from '../../../src/engine/publish/sink.js';
import { SpireServerSync } from '../../../src/engine/publish/spire-sync.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { FakeSpireApi } from '../../fakes/fake-spire-api.js';

const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const bundle = (td: string, seq: bigint) =>
  TrustBundle.create({
    trustDomain: TrustDomain.parse(td),
    jwtAuthorities: [jwtAuthority(`k${seq}`, key)],
    sequence: seq,
  });

describe('SpireServerSync as a Sink', () => {
  it('apply() converges to the given set, level-triggered, and reports writes, removals and refusals', async () => {
    const api = new FakeSpireApi();
    const saved = new Map<string, string[]>();
    const sink: Sink = new SpireServerSync('main', {
      clock: new FakeClock(),
      api,
      desired: () => new Map(),
      managed: {
        load: async (s) => new Set(saved.get(s) ?? []),
        save: async (s, m) => void saved.set(s, [...m]),
      },
    });
    const a = bundle('a.test', 1n);
    const b = bundle('b.test', 1n);
    expect(
      await sink.apply({
        bundles: new Map([
          ['a.test', a],
          ['b.test', b],
        ]),
        retained: new Set(),
      }),
    ).toEqual({
      ok: true,
      written: ['a.test', 'b.test'],
      removed: [],
      failed: [],
    });
    // Same set again: nothing to do.
    expect(
      await sink.apply({
        bundles: new Map([
          ['a.test', a],
          ['b.test', b],
        ]),
        retained: new Set(),
      }),
    ).toEqual({
      ok: true,
      written: [],
      removed: [],
      failed: [],
    });
    // b is retained (allowlisted, no bundle held): kept; a is gone from the set: revoked, but an
    // entry federates with it, so the report says it failed and why.
    api.federatedByEntries.add('a.test');
    const r = await sink.apply({ bundles: new Map(), retained: new Set(['b.test']) });
    expect(r.ok).toBe(false);
    expect(r.removed).toEqual([]);
    expect(r.failed).toEqual([
      expect.objectContaining({ trustDomain: 'a.test', code: 'ERR_SPIRE_REVOCATION_BLOCKED' }),
    ]);
    expect(api.bundles.has('b.test')).toBe(true);
    api.federatedByEntries.delete('a.test');
    expect(await sink.apply({ bundles: new Map(), retained: new Set(['b.test']) })).toEqual({
      ok: true,
      written: [],
      removed: ['a.test'],
      failed: [],
    });
  });
});
