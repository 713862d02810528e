/**
 * Test PKI fixtures: a little PKI per trust domain (root CA, intermediate CA, leaf SVIDs, JWT
 * signing keys) built with src/adapters/pki, its TrustBundle, and a JWS helper that can also craft tokens a
 * real issuer never would (alg none, HS256, missing claims, bad signatures).
 *
 * Every validity period is relative to {@link T0}, a fixed instant; tests pass `now` explicitly.
 */

import { constants, createHmac, sign as cryptoSign, type KeyObject } from 'node:crypto';
import {
  type CreateX509SvidOptions,
  createCa,
  createX509Svid,
  type IssuedCert,
  type KeyAlgorithm,
} from '../../src/adapters/pki/index.js';
import { type JwtAuthority, jwtAuthority, TrustBundle } from '../../src/core/bundle/trust-bundle.js';
import { SpiffeId, TrustDomain } from '../../src/core/spiffeid/index.js';
import { keyPairSync } from '../../src/platform/keygen.js';

/** The fixed "now" of verification tests: 2030-01-01T00:00:00Z, ms. */
export const T0 = Date.UTC(2030, 0, 1);
export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** JWT signing key kinds the fixtures provide; kids are `<td>/<kind>`. */
export type JwtKeyKind = 'ec-p256' | 'ec-p384' | 'ec-p521' | 'rsa';

export interface JwtKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** A trust domain's PKI: CAs, its bundle, and factories for SVIDs. */
export interface TestPki {
  readonly td: TrustDomain;
  readonly root: IssuedCert;
  readonly intermediate: IssuedCert;
  readonly jwtKeys: Readonly<Record<JwtKeyKind, JwtKey>>;
  /** The bundle: the root as X.509 authority, every JWT key as JWT authority. */
  readonly bundle: TrustBundle;
  /** `spiffe://<td><path>`. */
  id(path?: string): SpiffeId;
  /** A leaf signed by the intermediate (or `issuer`), valid T0-1h..T0+1h unless overridden. */
  svid(path?: string, opts?: Partial<CreateX509SvidOptions>): Promise<IssuedCert>;
}

export interface TestPkiOptions {
  readonly keyAlg?: KeyAlgorithm;
  /** CA validity; default T0-1d..T0+30d. */
  readonly caNotBefore?: number;
  readonly caNotAfter?: number;
  readonly sequence?: bigint;
}

/** RSA key generation is slow: one RSA JWT key pair shared by every fixture PKI of a test file. */
let sharedRsa: { privateKey: KeyObject; publicKey: KeyObject } | undefined;

function jwtKeys(td: TrustDomain): Record<JwtKeyKind, JwtKey> {
  sharedRsa ??= keyPairSync('rsa', { modulusLength: 2048 });
  const ec = (namedCurve: string) => keyPairSync('ec', { namedCurve });
  const make = (kind: JwtKeyKind, pair: { privateKey: KeyObject; publicKey: KeyObject }): JwtKey => ({
    kid: `${td.name}/${kind}`,
    ...pair,
  });
  return {
    'ec-p256': make('ec-p256', ec('P-256')),
    'ec-p384': make('ec-p384', ec('P-384')),
    'ec-p521': make('ec-p521', ec('P-521')),
    // The shared RSA key gets a per-domain kid, so it is still "another domain's key" by kid.
    rsa: make('rsa', sharedRsa),
  };
}

/** Builds a {@link TestPki} for `name` (root → intermediate, EC P-256 by default). */
export async function makePki(name: string, opts: TestPkiOptions = {}): Promise<TestPki> {
  const td = TrustDomain.parse(name);
  const notBefore = new Date(opts.caNotBefore ?? T0 - DAY);
  const notAfter = new Date(opts.caNotAfter ?? T0 + 30 * DAY);
  const keyAlg = opts.keyAlg ?? 'ec-p256';
  const root = await createCa({ trustDomain: td, notBefore, notAfter, keyAlg });
  const intermediate = await createCa({ trustDomain: td, notBefore, notAfter, keyAlg, issuer: root });
  const keys = jwtKeys(td);
  const jwtAuthorities: JwtAuthority[] = Object.values(keys).map((k) => jwtAuthority(k.kid, k.publicKey));
  const bundle = TrustBundle.create({
    trustDomain: td,
    x509Authorities: [root.der],
    jwtAuthorities,
    sequence: opts.sequence ?? 1n,
  });
  const id = (path = '/workload') => SpiffeId.parse(td.idString() + path);
  return {
    td,
    root,
    intermediate,
    jwtKeys: keys,
    bundle,
    id,
    svid: (path = '/workload', o = {}) =>
      createX509Svid({
        id: id(path),
        issuer: intermediate,
        notBefore: new Date(T0 - HOUR),
        notAfter: new Date(T0 + HOUR),
        keyAlg,
        ...o,
      }),
  };
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** What {@link signJws} signs with. */
export type JwsSigner =
  | { readonly alg: 'ES256' | 'ES384' | 'ES512'; readonly key: KeyObject }
  | { readonly alg: 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512'; readonly key: KeyObject }
  | { readonly alg: 'HS256'; readonly secret: Buffer }
  | { readonly alg: 'none' };

const HASH: Record<string, string> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };

/**
 * Signs `header.payload` as a JWS Compact Serialization, byte for byte as given: `header` is used
 * as-is (its `alg` is NOT forced to `signer.alg`), so tests can lie about the algorithm.
 */
export function signJws(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  signer: JwsSigner,
): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const data = Buffer.from(input, 'latin1');
  let sig: Buffer;
  if (signer.alg === 'none') sig = Buffer.alloc(0);
  else if (signer.alg === 'HS256') sig = createHmac('sha256', signer.secret).update(data).digest();
  else {
    const hash = HASH[signer.alg.slice(2)]!;
    if (signer.alg.startsWith('ES'))
      sig = cryptoSign(hash, data, { key: signer.key, dsaEncoding: 'ieee-p1363' });
    else if (signer.alg.startsWith('PS')) {
      sig = cryptoSign(hash, data, {
        key: signer.key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
      });
    } else sig = cryptoSign(hash, data, signer.key);
  }
  return `${input}.${b64url(sig)}`;
}

/** Standard JWT-SVID claims for `sub`, valid T0-1m..T0+5m, audience `aud`. */
export function svidClaims(
  sub: string,
  aud: string | string[] = 'spiffe://example.org/api',
): Record<string, unknown> {
  return { sub, aud, iat: T0 / 1000 - 60, exp: T0 / 1000 + 300 };
}
