import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WireBundleCache, wireBundleDigest } from '../../../src/adapters/spire/bundle-cache.js';
import { SpireServerClient } from '../../../src/adapters/spire/client.js';
import { bundleFromWire, bundleToWire } from '../../../src/adapters/spire/convert.js';
import { SpireEmulator } from '../../../src/adapters/spire/emulator/index.js';
import { loadSpireApi } from '../../../src/adapters/spire/proto.js';
import type { WireBundle } from '../../../src/adapters/spire/wire.js';
import { bundlesEqual } from '../../../src/core/bundle/diff.js';
import { SpireError } from '../../../src/errors.js';
import { makeBundle, makeJwtKey } from './helpers.js';

const api = loadSpireApi();
/** Through the real protobuf encoder/decoder, as the client receives it (fresh objects each time). */
function viaProtobuf(b: WireBundle): WireBundle {
  const m = api.bundle.GetBundle!;
  return m.responseDeserialize(m.responseSerialize(b)) as WireBundle;
}

describe('WireBundleCache', () => {
  let wire: WireBundle;
  beforeAll(async () => {
    wire = bundleToWire(await makeBundle('peer.test', { refreshHint: 300, sequence: 7n }));
  });

  it('returns the same bundle for the same content, and counts the hit', () => {
    const cache = new WireBundleCache();
    const a = cache.convert(viaProtobuf(wire));
    const b = cache.convert(viaProtobuf(wire));
    expect(b).toBe(a);
    expect(bundlesEqual(a, bundleFromWire(wire))).toBe(true);
    expect(cache.stats()).toEqual({ size: 1, hits: 1, misses: 1 });
  });

  it('converts again when any digested field changes', () => {
    const changes: ((w: WireBundle) => WireBundle)[] = [
      (w) => ({ ...w, sequence_number: '8' }),
      (w) => ({ ...w, refresh_hint: '301' }),
      (w) => ({ ...w, jwt_authorities: w.jwt_authorities.map((k) => ({ ...k, expires_at: '99' })) }),
      (w) => ({ ...w, jwt_authorities: w.jwt_authorities.map((k) => ({ ...k, key_id: `${k.key_id}x` })) }),
      (w) => ({ ...w, x509_authorities: w.x509_authorities.map((a) => ({ ...a, tainted: true })) }),
      (w) => ({ ...w, x509_authorities: [] }),
    ];
    for (const change of changes) {
      const cache = new WireBundleCache();
      const before = cache.convert(wire);
      const changed = change(wire);
      expect(wireBundleDigest(changed)).not.toBe(wireBundleDigest(wire));
      const after = cache.convert(changed);
      expect(after).not.toBe(before);
      expect(after.sequence).toBe(bundleFromWire(changed).sequence);
      expect(bundlesEqual(after, bundleFromWire(changed))).toBe(true);
      expect(cache.stats().misses).toBe(2);
    }
  });

  it('a new JWT key is seen (content of the same trust domain replaced, one entry kept)', () => {
    const cache = new WireBundleCache();
    cache.convert(wire);
    const key = makeJwtKey('rotated');
    const next: WireBundle = {
      ...wire,
      sequence_number: '8',
      jwt_authorities: [
        ...wire.jwt_authorities,
        { public_key: Buffer.from(key.spki), key_id: key.kid, expires_at: '0', tainted: false },
      ],
    };
    const b = cache.convert(next);
    expect(b.jwtAuthorities.has('rotated')).toBe(true);
    expect(cache.stats().size).toBe(1);
  });

  it('is bounded: the least recently used trust domain leaves first', async () => {
    const cache = new WireBundleCache({ maxEntries: 2 });
    const [a, b, c] = await Promise.all(['a.test', 'b.test', 'c.test'].map((n) => makeBundle(n)));
    const first = cache.convert(bundleToWire(a!));
    cache.convert(bundleToWire(b!));
    expect(cache.convert(bundleToWire(a!))).toBe(first); // a is now the most recent
    cache.convert(bundleToWire(c!)); // evicts b
    expect(cache.stats().size).toBe(2);
    expect(cache.convert(bundleToWire(a!))).toBe(first);
    const misses = cache.stats().misses;
    cache.convert(bundleToWire(b!));
    expect(cache.stats().misses).toBe(misses + 1);
    expect(() => new WireBundleCache({ maxEntries: 0 })).toThrow(TypeError);
  });

  it('a bundle that does not convert throws the coded error every time and is not cached', () => {
    const cache = new WireBundleCache();
    const bad: WireBundle = {
      ...wire,
      x509_authorities: [{ asn1: new Uint8Array([0x30, 0x03, 1, 2, 3]), tainted: false }],
    };
    for (let i = 0; i < 2; i++) {
      let err: unknown;
      try {
        cache.convert(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SpireError);
      expect((err as SpireError).code).toBe('ERR_SPIRE_CONVERSION');
    }
    expect(cache.stats()).toEqual({ size: 0, hits: 0, misses: 2 });
  });
});

describe('SpireServerClient reuses unchanged conversions', () => {
  const emu = new SpireEmulator({ trustDomain: 'cache.test', api });
  let client: SpireServerClient;
  const cache = new WireBundleCache();
  beforeAll(async () => {
    const { address } = await emu.start();
    client = new SpireServerClient({ address, api, bundleCache: cache });
    emu.setFederatedBundle(await makeBundle('peer-a.test', { sequence: 1n }));
    emu.setFederatedBundle(await makeBundle('peer-b.test', { sequence: 1n }));
  });
  afterAll(async () => {
    client.close();
    await emu.stop();
  });

  it('lists twice: same objects; after a change only that bundle is new', async () => {
    const first = await client.listFederatedBundles();
    const again = await client.listFederatedBundles();
    expect(again.map((b) => b.trustDomain.name).sort()).toEqual(['peer-a.test', 'peer-b.test']);
    for (const b of again) expect(first).toContain(b);
    emu.setFederatedBundle(await makeBundle('peer-a.test', { sequence: 2n }));
    const third = await client.listFederatedBundles();
    const a = third.find((b) => b.trustDomain.name === 'peer-a.test')!;
    const b = third.find((x) => x.trustDomain.name === 'peer-b.test')!;
    expect(a.sequence).toBe(2n);
    expect(first).not.toContain(a);
    expect(first).toContain(b);
    const own1 = await client.getBundle();
    emu.prepareJwtAuthority();
    const own2 = await client.getBundle();
    expect(own2).not.toBe(own1);
    expect(own2.jwtAuthorities.size).toBe(own1.jwtAuthorities.size + 1);
    expect(await client.getBundle()).toBe(own2);
  });

  it('after a BatchSet, reading the bundle back returns the object that was written', async () => {
    const written = await makeBundle('peer-c.test', { sequence: 5n, refreshHint: 300 });
    const [r] = await client.batchSetFederatedBundle([written]);
    expect(r!.ok).toBe(true);
    expect(r!.bundle).toBe(written);
    const listed = (await client.listFederatedBundles()).find((b) => b.trustDomain.name === 'peer-c.test');
    expect(listed).toBe(written);
    expect(await client.getFederatedBundle('peer-c.test')).toBe(written);
    const other = await makeBundle('peer-d.test');
    expect(() => cache.remember(bundleToWire(written), other)).toThrow(TypeError);
  });
});
