/**
 * A full rotation of a peer's bundle, for benchmarks that need every output format to change: a
 * new X.509 authority (the previous one kept, as during a CA rotation), a new JWT key (the oldest
 * of three dropped) and sequence + 1. (BundleFleet.rotate changes only the JWT keys and the
 * sequence, which leaves the X.509-only outputs — gRPC/Envoy maps, PEM — untouched.)
 * @module
 */

import { createCa } from '../../src/adapters/pki/index.js';
import { jwtAuthority, TrustBundle } from '../../src/core/bundle/trust-bundle.js';
import { keyPairSync } from '../../src/platform/keygen.js';

/** The rotated bundle and what identifies it in each output. */
export interface Rotation {
  readonly bundle: TrustBundle;
  /** Key ID of the new JWT authority (in bundle, bundle-map, jwks, OIDC JWKS, relay). */
  readonly kid: string;
  /** Base64 (standard, unwrapped) DER of the new X.509 authority (the `x5c` of the JSON formats). */
  readonly x5c: string;
  /** The first 64-character base64 line of the new authority's PEM body. */
  readonly pemLine: string;
}

/** Builds the next bundle of `current` (see the module overview); about 5 ms (a new CA key). */
export async function rotateFully(current: TrustBundle, tag: string): Promise<Rotation> {
  const td = current.trustDomain;
  const seq = current.sequence + 1n;
  const ca = await createCa({
    trustDomain: td,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 7 * 86_400_000),
  });
  const kid = `${td.name.split('.')[0]}-${tag}-s${seq}`;
  const { publicKey } = keyPairSync('ec', { namedCurve: 'P-256' });
  const bundle = TrustBundle.create({
    trustDomain: td,
    x509Authorities: [...current.x509Authorities.map((a) => a.der), ca.der].slice(-2),
    jwtAuthorities: [...current.jwtAuthorities.values(), jwtAuthority(kid, publicKey)].slice(-3),
    refreshHint: current.refreshHint,
    sequence: seq,
  });
  const x5c = Buffer.from(ca.der).toString('base64');
  return { bundle, kid, x5c, pemLine: x5c.slice(0, 64) };
}
