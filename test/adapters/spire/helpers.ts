/** Shared fixtures for the SPIRE layer's tests: CAs, JWT keys and bundles built with src/pki. */

import { randomBytes } from 'node:crypto';
import { createCa, type IssuedCert } from '../../../src/adapters/pki/index.js';
import { type JwtAuthority, jwtAuthority, TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { keyPairSync } from '../../../src/platform/keygen.js';

/** Fixed validity window for fixtures (wide enough never to expire during a run). */
export const NOT_BEFORE = new Date('2025-01-01T00:00:00Z');
export const NOT_AFTER = new Date('2035-01-01T00:00:00Z');

export function td(name: string): TrustDomain {
  return TrustDomain.parse(name);
}

export async function makeCa(trustDomain: string): Promise<IssuedCert> {
  return createCa({ trustDomain: td(trustDomain), notBefore: NOT_BEFORE, notAfter: NOT_AFTER });
}

export function makeJwtKey(kid = randomBytes(8).toString('hex'), expiresAt = 2_000_000_000): JwtAuthority {
  const { publicKey } = keyPairSync('ec', { namedCurve: 'P-256' });
  return jwtAuthority(kid, publicKey, expiresAt);
}

/** A bundle with `x509` fresh CAs and `jwt` fresh JWT keys. */
export async function makeBundle(
  trustDomain: string,
  opts: { x509?: number; jwt?: number; refreshHint?: number; sequence?: bigint } = {},
): Promise<TrustBundle> {
  const cas = await Promise.all(Array.from({ length: opts.x509 ?? 1 }, () => makeCa(trustDomain)));
  return TrustBundle.create({
    trustDomain: td(trustDomain),
    x509Authorities: cas.map((c) => c.der),
    jwtAuthorities: Array.from({ length: opts.jwt ?? 1 }, () => makeJwtKey()),
    refreshHint: opts.refreshHint ?? 0,
    sequence: opts.sequence ?? 0n,
  });
}
