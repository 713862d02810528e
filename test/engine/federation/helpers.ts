/** Shared fixtures for the federation tests: trust domains, CAs, SVIDs and bundles built with src/pki. */

import { randomBytes } from 'node:crypto';
import { createCa, createX509Svid, type IssuedCert } from '../../../src/adapters/pki/index.js';
import { type JwtAuthority, jwtAuthority, TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { keyPairSync } from '../../../src/platform/keygen.js';

/** Fixed validity window for fixtures (wide enough never to expire during a run). */
export const NOT_BEFORE = new Date('2025-01-01T00:00:00Z');
export const NOT_AFTER = new Date('2035-01-01T00:00:00Z');

export function td(name: string): TrustDomain {
  return TrustDomain.parse(name);
}

export function id(value: string): SpiffeId {
  return SpiffeId.parse(value);
}

export async function makeCa(trustDomain: string): Promise<IssuedCert> {
  return createCa({ trustDomain: td(trustDomain), notBefore: NOT_BEFORE, notAfter: NOT_AFTER });
}

export function makeJwtKey(kid = randomBytes(8).toString('hex')): JwtAuthority {
  const { publicKey } = keyPairSync('ec', { namedCurve: 'P-256' });
  return jwtAuthority(kid, publicKey);
}

/** A bundle of `cas` (or one fresh CA) plus one JWT key. */
export async function makeBundle(
  trustDomain: string,
  opts: { cas?: IssuedCert[]; jwt?: number; refreshHint?: number; sequence?: bigint } = {},
): Promise<TrustBundle> {
  const cas = opts.cas ?? [await makeCa(trustDomain)];
  return TrustBundle.create({
    trustDomain: td(trustDomain),
    x509Authorities: cas.map((c) => c.der),
    jwtAuthorities: Array.from({ length: opts.jwt ?? 1 }, () => makeJwtKey()),
    refreshHint: opts.refreshHint ?? 0,
    sequence: opts.sequence ?? 0n,
  });
}

/** An X509-SVID for `spiffeId` issued by `ca`, with DNS SANs when given (for https_web servers). */
export async function makeSvid(
  ca: IssuedCert,
  spiffeId: string,
  opts: { dnsNames?: string[]; notBefore?: Date; notAfter?: Date } = {},
): Promise<IssuedCert> {
  return createX509Svid({
    id: id(spiffeId),
    issuer: ca,
    notBefore: opts.notBefore ?? NOT_BEFORE,
    notAfter: opts.notAfter ?? NOT_AFTER,
    ...(opts.dnsNames ? { dnsNames: opts.dnsNames } : {}),
  });
}
