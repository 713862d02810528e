import { describe, expect, it } from 'vitest';
import { marshalBundleMap } from '../../src/bundle/bundle-map.js';
import type { BrokerError } from '../../src/errors.js';
import { TrustDomain } from '../../src/spiffeid/index.js';
import { PolledBundleMapSource } from '../../src/tls/index.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { makePki } from '../support/fixtures.js';

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
