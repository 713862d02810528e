import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, type IssuedCert } from '../../../src/adapters/pki/index.js';
import {
  authoritiesUnchanged,
  backoffDelay,
  bundlesEqual,
  DEFAULT_MAX_REFRESH_HINT_SECONDS,
  diffBundles,
  effectiveRefreshHint,
  FEDERATION_REFRESH_POLICY,
  jwtAuthority,
  nextRefreshDelay,
  TrustBundle,
} from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import { BundleError } from '../../../src/errors.js';
import { keyPairSync } from '../../../src/platform/keygen.js';

const td = TrustDomain.parse('example.org');
const k1 = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const k2 = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
let ca1: IssuedCert;
let ca2: IssuedCert;

beforeAll(async () => {
  // Lifetimes 10 h and 20 h: the derived hint is a tenth of the shortest, 1 h.
  ca1 = await createCa({
    trustDomain: td,
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2026-01-01T10:00:00Z'),
  });
  ca2 = await createCa({
    trustDomain: td,
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2026-01-01T20:00:00Z'),
  });
});

describe('diff and equality', () => {
  it('reports authorities added, removed and changed', () => {
    const before = TrustBundle.create({
      trustDomain: td,
      x509Authorities: [ca1.der],
      jwtAuthorities: [jwtAuthority('a', k1), jwtAuthority('b', k1)],
      sequence: 1n,
    });
    const after = TrustBundle.create({
      trustDomain: td,
      x509Authorities: [ca2.der],
      jwtAuthorities: [jwtAuthority('a', k2), jwtAuthority('c', k1)],
      sequence: 2n,
    });
    const d = diffBundles(before, after);
    expect(d.x509Added).toEqual([after.x509Authorities[0]!.sha256]);
    expect(d.x509Removed).toEqual([before.x509Authorities[0]!.sha256]);
    expect(d.jwtAdded).toEqual(['c']);
    expect(d.jwtRemoved).toEqual(['b']);
    expect(d.jwtChanged).toEqual(['a']);
    expect(d.sequenceChanged).toBe(true);
    expect(d.refreshHintChanged).toBe(false);
    expect(authoritiesUnchanged(d)).toBe(false);
    expect(authoritiesUnchanged(diffBundles(before, before.withSequence(9n)))).toBe(true);
  });

  it('treats a missing "before" as everything added', () => {
    const b = TrustBundle.create({ trustDomain: td, jwtAuthorities: [jwtAuthority('a', k1)] });
    expect(diffBundles(undefined, b).jwtAdded).toEqual(['a']);
  });

  it('refuses to diff different trust domains', () => {
    const a = TrustBundle.create({ trustDomain: td });
    const b = TrustBundle.create({ trustDomain: TrustDomain.parse('other.org') });
    expect(() => diffBundles(a, b)).toThrow(TypeError);
    expect(bundlesEqual(a, b)).toBe(false);
  });

  it('equality ignores authority order and optionally sequence/hint', () => {
    const a = TrustBundle.create({
      trustDomain: td,
      x509Authorities: [ca1.der, ca2.der],
      sequence: 1n,
      refreshHint: 5,
    });
    const b = TrustBundle.create({
      trustDomain: td,
      x509Authorities: [ca2.der, ca1.der],
      sequence: 2n,
      refreshHint: 6,
    });
    expect(bundlesEqual(a, b)).toBe(false);
    expect(bundlesEqual(a, b, { sequence: false, refreshHint: false })).toBe(true);
    const c = TrustBundle.create({
      trustDomain: td,
      x509Authorities: [ca1.der],
      sequence: 1n,
      refreshHint: 5,
    });
    expect(bundlesEqual(a, c, { sequence: false, refreshHint: false })).toBe(false);
  });

  it('TrustBundle.create validates its parts', () => {
    const codeOf = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as BundleError).code;
      }
      return undefined;
    };
    expect(codeOf(() => TrustBundle.create({ trustDomain: td, refreshHint: -1 }))).toBe(
      'ERR_BUNDLE_REFRESH_HINT_INVALID',
    );
    expect(codeOf(() => TrustBundle.create({ trustDomain: td, sequence: 1n << 64n }))).toBe(
      'ERR_BUNDLE_SEQUENCE_INVALID',
    );
    expect(codeOf(() => TrustBundle.create({ trustDomain: td, x509Authorities: [ca1.der, ca1.der] }))).toBe(
      'ERR_BUNDLE_X509_DUPLICATE',
    );
    expect(
      codeOf(() =>
        TrustBundle.create({
          trustDomain: td,
          jwtAuthorities: [jwtAuthority('a', k1), jwtAuthority('a', k2)],
        }),
      ),
    ).toBe('ERR_BUNDLE_JWT_KID_DUPLICATE');
    expect(codeOf(() => jwtAuthority('', k1))).toBe('ERR_BUNDLE_JWT_KID_MISSING');
    expect(codeOf(() => jwtAuthority('a', new Uint8Array([1, 2, 3])))).toBe('ERR_BUNDLE_JWK_INVALID');
    expect(() => TrustBundle.create({ trustDomain: td, x509Authorities: [new Uint8Array([1])] })).toThrow(
      BundleError,
    );
  });

  it('earliestExpiry covers both kinds', () => {
    const b = TrustBundle.create({
      trustDomain: td,
      x509Authorities: [ca2.der, ca1.der],
      jwtAuthorities: [jwtAuthority('a', k1, 1_800_000_000)],
    });
    expect(b.earliestExpiry()).toEqual({ x509: Date.parse('2026-01-01T10:00:00Z'), jwt: 1_800_000_000_000 });
  });
});

describe('refresh schedule', () => {
  it('matches SPIRE by default: hint/4 with a one-minute floor on the hint', () => {
    expect(nextRefreshDelay(undefined)).toBe(15_000);
    expect(nextRefreshDelay(TrustBundle.create({ trustDomain: td, refreshHint: 300 }))).toBe(75_000);
    expect(nextRefreshDelay(TrustBundle.create({ trustDomain: td, refreshHint: 10 }))).toBe(15_000);
  });

  it('derives the hint from the shortest authority lifetime when unset', () => {
    const b = TrustBundle.create({ trustDomain: td, x509Authorities: [ca2.der, ca1.der] });
    expect(effectiveRefreshHint(b)).toBe(3600);
    expect(nextRefreshDelay(b)).toBe(900_000);
  });

  it('federation policy clamps to [1 s, 5 min] and jitters downwards only', () => {
    const p = FEDERATION_REFRESH_POLICY;
    expect(nextRefreshDelay(TrustBundle.create({ trustDomain: td, refreshHint: 2 }), p, () => 1)).toBe(1000);
    expect(nextRefreshDelay(TrustBundle.create({ trustDomain: td, refreshHint: 86_400 }), p, () => 1)).toBe(
      300_000,
    );
    expect(nextRefreshDelay(TrustBundle.create({ trustDomain: td, refreshHint: 100 }), p, () => 0)).toBe(
      22_500,
    );
    expect(nextRefreshDelay(undefined, p, () => 1)).toBe(75_000);
  });

  it('caps the hint at one day by default, so a huge hint cannot stretch the schedule or the stale window', () => {
    expect(DEFAULT_MAX_REFRESH_HINT_SECONDS).toBe(86_400);
    const huge = TrustBundle.create({ trustDomain: td, refreshHint: Number.MAX_SAFE_INTEGER });
    expect(effectiveRefreshHint(huge)).toBe(86_400);
    expect(effectiveRefreshHint(huge, { minHintSeconds: 1, defaultHintSeconds: 300 })).toBe(86_400);
    expect(nextRefreshDelay(huge)).toBe(21_600_000);
    expect(effectiveRefreshHint(huge, { maxHintSeconds: 3600 })).toBe(3600);
    // The cap wins over the floor; hints under it are untouched.
    expect(effectiveRefreshHint(huge, { maxHintSeconds: 30, minHintSeconds: 60 })).toBe(30);
    expect(effectiveRefreshHint(TrustBundle.create({ trustDomain: td, refreshHint: 86_399 }))).toBe(86_399);
    expect(() => effectiveRefreshHint(huge, { maxHintSeconds: 0 })).toThrow(TypeError);
  });

  it('backoff doubles up to its cap', () => {
    const d = [1, 2, 3, 4, 20].map((n) => backoffDelay(n, { baseMs: 1000, maxMs: 5000, jitter: 0 }));
    expect(d).toEqual([1000, 2000, 4000, 5000, 5000]);
    expect(backoffDelay(1, { baseMs: 1000, jitter: 0.5 }, () => 0)).toBe(500);
  });

  it('refuses a non-positive divisor', () => {
    expect(() => nextRefreshDelay(undefined, { divisor: 0 })).toThrow(TypeError);
  });
});
