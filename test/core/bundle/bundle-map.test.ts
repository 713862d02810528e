import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bundlesEqual,
  jwtAuthority,
  marshalBundleMap,
  parseBundleMap,
  TrustBundle,
} from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import { BundleError } from '../../../src/errors.js';
import { keyPairSync } from '../../../src/platform/keygen.js';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BundleError);
    return (err as BundleError).code;
  }
  throw new Error('expected a BundleError');
}

const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;

describe('Bundle Maps', () => {
  it('round-trips several trust domains, sorted, without per-bundle hints', () => {
    const a = TrustBundle.create({
      trustDomain: TrustDomain.parse('b.test'),
      jwtAuthorities: [jwtAuthority('k', key)],
      sequence: 3n,
      refreshHint: 60,
    });
    const b = TrustBundle.create({ trustDomain: TrustDomain.parse('a.test') });
    const text = marshalBundleMap([a, b]);
    expect(text.indexOf('"a.test"')).toBeLessThan(text.indexOf('"b.test"'));
    expect(text).not.toContain('spiffe_refresh_hint');
    const parsed = parseBundleMap(text);
    expect([...parsed.bundles.keys()]).toEqual(['a.test', 'b.test']);
    expect(bundlesEqual(parsed.bundles.get('b.test')!, a, { refreshHint: false })).toBe(true);
    expect(parsed.bundles.get('a.test')!.isEmpty()).toBe(true);
  });

  it('accepts an empty trust_domains object', () => {
    expect(parseBundleMap('{"trust_domains":{}}').bundles.size).toBe(0);
  });

  it.each([
    ['{}', 'ERR_BUNDLE_MAP_INVALID'],
    ['{"trust_domains":[]}', 'ERR_BUNDLE_MAP_INVALID'],
    ['[]', 'ERR_BUNDLE_MAP_INVALID'],
    ['{"trust_domains":{"Bad":{"keys":[]}}}', 'ERR_BUNDLE_MAP_INVALID'],
    [
      '{"trust_domains":{"a.test":{"keys":[]},"a.test":{"keys":[]}}}',
      'ERR_BUNDLE_MAP_DUPLICATE_TRUST_DOMAIN',
    ],
    [
      '{"trust_domains":{"a.test":{"keys":[]},"spiffe://a.test":{"keys":[]}}}',
      'ERR_BUNDLE_MAP_DUPLICATE_TRUST_DOMAIN',
    ],
    ['{"trust_domains":{"a.test":{}}}', 'ERR_BUNDLE_KEYS_MISSING'],
  ])('refuses %s with %s', (input, want) => {
    expect(code(() => parseBundleMap(input))).toBe(want);
  });

  it('names the trust domain whose bundle failed', () => {
    expect(() => parseBundleMap('{"trust_domains":{"x.test":{"keys":null}}}')).toThrow(
      /trust domain "x.test"/,
    );
  });

  it('refuses to marshal a trust domain twice (API misuse)', () => {
    const b = TrustBundle.create({ trustDomain: TrustDomain.parse('a.test') });
    expect(() => marshalBundleMap([b, b])).toThrow(TypeError);
  });

  it('property: arbitrary JSON yields a map or a coded error', () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 4 }), (j) => {
        for (const input of [j, `{"trust_domains":${j}}`]) {
          try {
            parseBundleMap(input);
          } catch (err) {
            expect(err).toBeInstanceOf(BundleError);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
