import { describe, expect, it } from 'vitest';
import { PolledBundleMapSource } from '../../../src/adapters/tls/index.js';
import { DEFAULT_PEER_BUNDLE_BYTES, marshalBundleMap } from '../../../src/core/bundle/bundle-map.js';
import { marshalBundle } from '../../../src/core/bundle/codec.js';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import type { BrokerError } from '../../../src/errors.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { makePki } from '../../support/fixtures.js';

describe('PolledBundleMapSource', () => {
  it('follows the served map, keeps the last good one on failures, and stops on abort', async () => {
    const [a, b] = await Promise.all([makePki('a.test'), makePki('b.test', { sequence: 4n })]);
    const answers: (() => Response)[] = [
      () => new Response(marshalBundleMap([a.bundle])),
      () => new Response('oops', { status: 503 }),
      () => new Response('{"trust_domains": 1}'),
      () => {
        throw new Error('connect ECONNREFUSED');
      },
      () => new Response(marshalBundleMap([a.bundle, b.bundle])),
    ];
    const urls: string[] = [];
    const clock = new FakeClock();
    const errors: BrokerError[] = [];
    const source = new PolledBundleMapSource({
      url: new URL('http://127.0.0.1:8089/v1/bundles'),
      intervalMs: 1000,
      clock,
      fetch: async (url) => {
        urls.push(url);
        const next = answers.shift();
        if (!next) throw new Error('no more answers');
        return next();
      },
      onError: (e) => errors.push(e),
    });
    const stop = new AbortController();
    const running = source.run(stop.signal);
    await source.ready();
    expect(source.getBundleForTrustDomain(a.td)).toBeDefined();
    expect(source.getBundleForTrustDomain(b.td)).toBeUndefined();
    for (let i = 0; i < 3; i++) await clock.advance(1000);
    expect(errors.map((e) => e.code)).toEqual([
      'ERR_API_RESPONSE',
      'ERR_BUNDLE_MAP_INVALID',
      'ERR_API_CONNECT',
    ]);
    expect(source.bundles().map((x) => x.trustDomain.name)).toEqual(['a.test']);
    await clock.advance(1000);
    expect(source.getBundleForTrustDomain(TrustDomain.parse('b.test'))?.sequence).toBe(4n);
    stop.abort();
    await running;
    expect(urls.every((u) => u === 'http://127.0.0.1:8089/v1/bundles')).toBe(true);
  });
});

describe('PolledBundleMapSource size limit', () => {
  it('by default takes a map larger than 1 MiB: the documented maximum map, not one peer, sets the limit', async () => {
    const pki = await makePki('base.test');
    const shared = pki.jwtKeys['ec-p256'].publicKey;
    // 24 peers, each bundle near the 64 KiB per-peer cap: ~1.5 MiB in all (the old 1 MiB default refused it).
    const bundles = Array.from({ length: 24 }, (_, d) =>
      TrustBundle.create({
        trustDomain: TrustDomain.parse(`peer-${d}.test`),
        jwtAuthorities: Array.from({ length: 150 }, (_, i) => jwtAuthority(`${i}-`.padEnd(250, 'k'), shared)),
        sequence: 1n,
      }),
    );
    for (const b of bundles) {
      expect(Buffer.byteLength(marshalBundle(b, { refreshHint: 0 }))).toBeLessThan(DEFAULT_PEER_BUNDLE_BYTES);
    }
    const body = marshalBundleMap(bundles);
    expect(body.length).toBeGreaterThan(1024 * 1024);
    const source = new PolledBundleMapSource({
      url: 'http://127.0.0.1:8089/v1/bundles',
      fetch: async () => new Response(body),
    });
    await source.refresh();
    expect(source.bundles()).toHaveLength(24);

    // An explicit limit still applies, from the declared length or from the body.
    const errors: string[] = [];
    for (const headers of [{ 'content-length': String(body.length) }, {}]) {
      const small = new PolledBundleMapSource({
        url: 'http://127.0.0.1:8089/v1/bundles',
        maxBytes: 1024 * 1024,
        fetch: async () => new Response(body, { headers }),
      });
      await small
        .refresh()
        .catch((e: BrokerError) => errors.push(`${e.code}: ${e.message.replace(/^GET \S+: /, '')}`));
    }
    expect(errors).toEqual([
      `ERR_BUNDLE_TOO_LARGE: bundle map is ${body.length} bytes; the limit is 1048576`,
      `ERR_BUNDLE_TOO_LARGE: bundle map is ${body.length} bytes; the limit is 1048576`,
    ]);
    expect(() => new PolledBundleMapSource({ url: 'http://x', maxBytes: 0 })).toThrow(TypeError);
  });
});
