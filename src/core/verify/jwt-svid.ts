import { constants, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { SpiffeIdError } from '../../errors.js';
import type { BundleSource } from '../bundle/source.js';
import type { SpiffeIdMatcher } from '../spiffeid/matcher.js';
import { SpiffeId } from '../spiffeid/spiffe-id.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import { failure, nowMs, type VerifyFailure } from './result.js';

/**
 * Default {@link VerifyJwtSvidOptions.leewaySeconds}: 0 — `exp` and `nbf` are enforced exactly at
 * the injected `now` (jose's default too; go-spiffe allows 60 s). JWT-SVID Appendix A permits "a
 * small amount of leeway"; set a few seconds where issuer and verifier clocks drift.
 */
export const DEFAULT_JWT_LEEWAY_SECONDS = 0;

/** Tokens longer than this (characters) are refused unparsed; SPIRE's JWT-SVIDs are under 1 KiB. */
export const MAX_JWT_SVID_LENGTH = 64 * 1024;

/** Smallest RSA modulus accepted for RS* / PS* (bits), as jose and RFC 7518 §3.3 require. */
export const MIN_RSA_BITS = 2048;

/** Options of {@link verifyJwtSvid}. */
export interface VerifyJwtSvidOptions {
  /** The verification time (a Date or ms since the Unix epoch). */
  readonly now: number | Date;
  /** The audience(s) this verifier identifies with; the token's `aud` must contain at least one. */
  readonly audience: string | readonly string[];
  /** Decides whether the verified SPIFFE ID is acceptable; any valid ID when absent. */
  readonly authorize?: SpiffeIdMatcher;
  /** Clock-skew allowance for `exp` and `nbf`, seconds. Default {@link DEFAULT_JWT_LEEWAY_SECONDS}. */
  readonly leewaySeconds?: number;
}

/** A verified JWT-SVID. */
export interface JwtSvidVerified {
  readonly ok: true;
  /** The `sub` claim as a SPIFFE ID. */
  readonly id: SpiffeId;
  readonly trustDomain: TrustDomain;
  /** Every claim of the payload, as decoded (after the signature verified). */
  readonly claims: Readonly<Record<string, unknown>>;
  /** `exp` in ms since the Unix epoch. */
  readonly expiresAt: number;
}

/** Outcome of {@link verifyJwtSvid}. */
export type JwtSvidVerifyResult = JwtSvidVerified | VerifyFailure;

interface AlgSpec {
  /** Key type the algorithm needs (node's asymmetricKeyType). */
  readonly kty: 'rsa' | 'ec';
  readonly hash: 'sha256' | 'sha384' | 'sha512';
  readonly pss?: boolean;
  /** For ES*: node's curve name and the raw R||S length (RFC 7518 §3.4). */
  readonly curve?: string;
  readonly sigLength?: number;
}

/** JWT-SVID §2.1: exactly RFC 7518 §3.3 (RS*), §3.4 (ES*) and §3.5 (PS*); never `none` or HS*. */
const ALGORITHMS: ReadonlyMap<string, AlgSpec> = new Map<string, AlgSpec>([
  ['RS256', { kty: 'rsa', hash: 'sha256' }],
  ['RS384', { kty: 'rsa', hash: 'sha384' }],
  ['RS512', { kty: 'rsa', hash: 'sha512' }],
  ['PS256', { kty: 'rsa', hash: 'sha256', pss: true }],
  ['PS384', { kty: 'rsa', hash: 'sha384', pss: true }],
  ['PS512', { kty: 'rsa', hash: 'sha512', pss: true }],
  ['ES256', { kty: 'ec', hash: 'sha256', curve: 'prime256v1', sigLength: 64 }],
  ['ES384', { kty: 'ec', hash: 'sha384', curve: 'secp384r1', sigLength: 96 }],
  ['ES512', { kty: 'ec', hash: 'sha512', curve: 'secp521r1', sigLength: 132 }],
]);

/** RFC 7518 §3.5: the PSS salt is as long as the hash output. */
const HASH_BYTES = { sha256: 32, sha384: 48, sha512: 64 } as const;

/** RFC 7515 §2: base64url without padding. */
const B64URL = /^[A-Za-z0-9_-]*$/;

function decodeSegment(seg: string, what: string): Buffer | VerifyFailure {
  if (seg.length % 4 === 1 || !B64URL.test(seg)) {
    return failure('ERR_VERIFY_JWT_MALFORMED', `JWT ${what} is not unpadded base64url (RFC 7515 §2)`);
  }
  const bytes = Buffer.from(seg, 'base64url');
  // RFC 4648 §3.5: the unused low bits of the last character must be zero. A lenient decoder maps
  // several strings to one signature, so a token could be altered and still verify (malleability);
  // only the canonical encoding — the one that re-encodes to itself — is accepted.
  if (bytes.toString('base64url') !== seg) {
    return failure(
      'ERR_VERIFY_JWT_MALFORMED',
      `JWT ${what} is not canonical base64url: its last character has non-zero unused bits (RFC 4648 §3.5)`,
    );
  }
  return bytes;
}

/** A decoded JSON object, wrapped so attacker-chosen members can never pass for a failure result. */
interface Decoded {
  readonly ok: true;
  readonly value: Record<string, unknown>;
}

function decodeJsonObject(seg: string, what: string): Decoded | VerifyFailure {
  const bytes = decodeSegment(seg, what);
  if (!Buffer.isBuffer(bytes)) return bytes;
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    return failure('ERR_VERIFY_JWT_MALFORMED', `JWT ${what} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return failure('ERR_VERIFY_JWT_MALFORMED', `JWT ${what} is not a JSON object`);
  }
  return { ok: true, value: value as Record<string, unknown> };
}

/** Why `key` cannot verify `alg`, or undefined when it fits (JWT-SVID §2.1: the alg must fit the key). */
function keyMismatch(alg: string, spec: AlgSpec, key: KeyObject, kid: string): string | undefined {
  const type = key.asymmetricKeyType;
  if (spec.kty === 'ec') {
    if (type !== 'ec') return `alg ${alg} needs an EC key but key "${kid}" is ${type}`;
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve !== spec.curve) return `alg ${alg} needs curve ${spec.curve} but key "${kid}" is on ${curve}`;
    return undefined;
  }
  if (type !== 'rsa' && !(spec.pss && type === 'rsa-pss')) {
    return `alg ${alg} needs an RSA key but key "${kid}" is ${type}`;
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) return `RSA key "${kid}" has ${bits} bits; at least ${MIN_RSA_BITS} are required`;
  return undefined;
}

function normalizeAudience(audience: unknown): readonly string[] {
  const list = typeof audience === 'string' ? [audience] : audience;
  if (
    !Array.isArray(list) ||
    list.length === 0 ||
    !list.every((a) => typeof a === 'string' && a.length > 0)
  ) {
    throw new TypeError(
      'verifyJwtSvid: opts.audience must be a non-empty string or a non-empty array of them',
    );
  }
  return list;
}

/**
 * Verifies a JWT-SVID (JWS Compact Serialization) against the JWT authorities of the bundle of the
 * trust domain named by its own `sub` claim — never another domain's:
 * 1. three base64url parts, JSON object header and payload (JWT-SVID §5.1);
 * 2. `alg` ∈ RS256/384/512, ES256/384/512, PS256/384/512 (§2.1), `typ` absent or JWT/JOSE (§2.3),
 *    no `crit` (no extension is understood, RFC 7515 §4.1.11);
 * 3. `kid` present — JWT-SVID §2.2 leaves it optional, but bundle keys are addressed by kid
 *    (JWT-SVID §6.1) so, like go-spiffe and SPIRE, a token without one cannot be verified;
 * 4. `sub` a SPIFFE ID (§3.1), decoded before the signature is checked only to pick the bundle;
 * 5. the key found under `kid` fits `alg` (type, curve, RSA ≥ 2048 bits) and the signature verifies;
 * 6. `exp` present and after `now` (§3.3), `nbf` not after `now` if present, within the leeway;
 * 7. `aud` contains one of `opts.audience` (§3.2); then `opts.authorize`.
 *
 * Synchronous (node:crypto, no WebCrypto round trip); never throws for a bad token, only a
 * `TypeError` on API misuse.
 *
 * @example
 * const r = verifyJwtSvid(token, bundles, { now: Date.now(), audience: 'spiffe://example.org/reports' });
 * if (r.ok) console.log(r.id.toString(), new Date(r.expiresAt)); else console.warn(r.code, r.message);
 */
export function verifyJwtSvid(
  token: string,
  source: BundleSource,
  opts: VerifyJwtSvidOptions,
): JwtSvidVerifyResult {
  const now = nowMs(opts?.now, 'verifyJwtSvid');
  const audiences = normalizeAudience(opts.audience);
  const leeway = opts.leewaySeconds ?? DEFAULT_JWT_LEEWAY_SECONDS;
  if (typeof leeway !== 'number' || !Number.isFinite(leeway) || leeway < 0) {
    throw new TypeError(`verifyJwtSvid: leewaySeconds must be a non-negative number, got ${leeway}`);
  }
  if (typeof source?.getBundleForTrustDomain !== 'function') {
    throw new TypeError('verifyJwtSvid: source must implement getBundleForTrustDomain');
  }
  if (typeof token !== 'string') throw new TypeError('verifyJwtSvid: token must be a string');
  if (token.length > MAX_JWT_SVID_LENGTH) {
    return failure(
      'ERR_VERIFY_JWT_MALFORMED',
      `token is ${token.length} characters; at most ${MAX_JWT_SVID_LENGTH}`,
    );
  }

  // JWT-SVID §5.1: JWS Compact Serialization, header.payload.signature.
  const dot1 = token.indexOf('.');
  const dot2 = dot1 === -1 ? -1 : token.indexOf('.', dot1 + 1);
  if (dot1 <= 0 || dot2 === -1 || token.indexOf('.', dot2 + 1) !== -1 || dot2 === token.length - 1) {
    return failure(
      'ERR_VERIFY_JWT_MALFORMED',
      'token is not a JWS Compact Serialization of three non-empty parts (JWT-SVID §5.1)',
    );
  }
  const decodedHeader = decodeJsonObject(token.slice(0, dot1), 'header');
  if (!decodedHeader.ok) return decodedHeader;
  const header = decodedHeader.value;

  // JWT-SVID §2.1: only the listed asymmetric algorithms; `none` and HS* are refused here.
  const alg = header.alg;
  const spec = typeof alg === 'string' ? ALGORITHMS.get(alg) : undefined;
  if (spec === undefined || typeof alg !== 'string') {
    return failure(
      'ERR_VERIFY_JWT_ALGORITHM',
      `alg ${JSON.stringify(alg ?? null)} is not allowed; JWT-SVID §2.1 permits RS256/384/512, ES256/384/512, PS256/384/512`,
    );
  }
  // JWT-SVID §2.3: typ, if set, is JWT or JOSE.
  if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE') {
    return failure(
      'ERR_VERIFY_JWT_HEADER',
      `typ ${JSON.stringify(header.typ)} is not JWT or JOSE (JWT-SVID §2.3)`,
    );
  }
  // RFC 7515 §4.1.11: critical extensions must be understood; none are (JWT-SVID §2 allows no others).
  if (header.crit !== undefined) {
    return failure('ERR_VERIFY_JWT_HEADER', 'header has crit; JWT-SVID §2 permits no header extensions');
  }
  const kid = header.kid;
  if (typeof kid !== 'string' || kid.length === 0) {
    return failure(
      'ERR_VERIFY_JWT_KID_MISSING',
      'header has no kid; bundle keys are selected by kid (JWT-SVID §6.1), so it is required',
    );
  }

  const decodedClaims = decodeJsonObject(token.slice(dot1 + 1, dot2), 'payload');
  if (!decodedClaims.ok) return decodedClaims;
  const claims = decodedClaims.value;
  // JWT-SVID §3.1: sub is the SPIFFE ID. Read (unverified) only to choose the trust domain's bundle.
  const sub = claims.sub;
  if (typeof sub !== 'string') {
    return failure(
      'ERR_VERIFY_JWT_SUBJECT',
      'token has no sub claim string; it MUST be a SPIFFE ID (JWT-SVID §3.1)',
    );
  }
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(sub);
  } catch (err) {
    if (!(err instanceof SpiffeIdError)) throw err;
    return failure(
      'ERR_VERIFY_JWT_SUBJECT',
      `sub ${JSON.stringify(sub.slice(0, 256))} is not a SPIFFE ID: ${err.message} (JWT-SVID §3.1)`,
    );
  }
  const td = id.trustDomain;
  // SPIFFE Federation §4.2: keys of the sub's own trust domain only.
  const bundle = source.getBundleForTrustDomain(td);
  if (!bundle)
    return failure('ERR_VERIFY_NO_BUNDLE', `no trust bundle is held for trust domain "${td.name}"`);
  if (bundle.isEmpty()) {
    return failure(
      'ERR_VERIFY_BUNDLE_REVOKED',
      `the bundle of trust domain "${td.name}" is empty: the domain revoked all its keys (SPIFFE Trust Domain and Bundle §4.1.3)`,
    );
  }
  const authority = bundle.jwtAuthorities.get(kid);
  if (!authority) {
    return failure(
      'ERR_VERIFY_JWT_KEY_NOT_FOUND',
      bundle.jwtAuthorities.size === 0
        ? `the bundle of trust domain "${td.name}" has no JWT authorities (JWT-SVID §6.2)`
        : `no JWT authority with kid ${JSON.stringify(kid)} in the bundle of trust domain "${td.name}"`,
    );
  }
  const mismatch = keyMismatch(alg, spec, authority.publicKey, kid);
  if (mismatch) return failure('ERR_VERIFY_JWT_ALGORITHM', mismatch);

  // RFC 7515 §5.2: verify over the ASCII header.payload.
  const signature = decodeSegment(token.slice(dot2 + 1), 'signature');
  if (!Buffer.isBuffer(signature)) return signature;
  if (spec.sigLength !== undefined && signature.length !== spec.sigLength) {
    return failure(
      'ERR_VERIFY_JWT_SIGNATURE',
      `${alg} signature is ${signature.length} bytes; R||S must be ${spec.sigLength} (RFC 7518 §3.4)`,
    );
  }
  let valid: boolean;
  try {
    const data = Buffer.from(token.slice(0, dot2), 'latin1');
    valid =
      spec.kty === 'ec'
        ? cryptoVerify(spec.hash, data, { key: authority.publicKey, dsaEncoding: 'ieee-p1363' }, signature)
        : spec.pss
          ? cryptoVerify(
              spec.hash,
              data,
              {
                key: authority.publicKey,
                padding: constants.RSA_PKCS1_PSS_PADDING,
                saltLength: HASH_BYTES[spec.hash],
              },
              signature,
            )
          : cryptoVerify(spec.hash, data, authority.publicKey, signature);
  } catch (err) {
    return failure('ERR_VERIFY_JWT_SIGNATURE', `signature could not be checked: ${(err as Error).message}`);
  }
  if (!valid) {
    return failure(
      'ERR_VERIFY_JWT_SIGNATURE',
      `${alg} signature does not verify with key ${JSON.stringify(kid)} of trust domain "${td.name}"`,
    );
  }

  // JWT-SVID §3.3, RFC 7519 §4.1.4: exp is required and must be in the future.
  const nowSeconds = now / 1000;
  const exp = claims.exp;
  if (exp === undefined) {
    return failure('ERR_VERIFY_JWT_EXPIRY_MISSING', 'token has no exp claim; JWT-SVID §3.3 requires one');
  }
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    return failure('ERR_VERIFY_JWT_MALFORMED', 'exp is not a NumericDate (RFC 7519 §2)');
  }
  if (nowSeconds >= exp + leeway) {
    return failure(
      'ERR_VERIFY_JWT_EXPIRED',
      `token expired at ${new Date(exp * 1000).toISOString()} (now is ${new Date(now).toISOString()}, leeway ${leeway}s)`,
    );
  }
  // RFC 7519 §4.1.5: honour nbf when present.
  const nbf = claims.nbf;
  if (nbf !== undefined) {
    if (typeof nbf !== 'number' || !Number.isFinite(nbf)) {
      return failure('ERR_VERIFY_JWT_MALFORMED', 'nbf is not a NumericDate (RFC 7519 §2)');
    }
    if (nowSeconds + leeway < nbf) {
      return failure(
        'ERR_VERIFY_JWT_NOT_YET_VALID',
        `token is not valid before ${new Date(nbf * 1000).toISOString()} (now is ${new Date(now).toISOString()}, leeway ${leeway}s)`,
      );
    }
  }
  // JWT-SVID §3.2: aud MUST be present and contain a value this validator identifies with.
  const aud = claims.aud;
  const tokenAudiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined;
  if (tokenAudiences === undefined || tokenAudiences.length === 0) {
    return failure('ERR_VERIFY_JWT_AUDIENCE', 'token has no aud claim; JWT-SVID §3.2 requires one');
  }
  if (!tokenAudiences.some((a) => typeof a === 'string' && audiences.includes(a))) {
    return failure(
      'ERR_VERIFY_JWT_AUDIENCE',
      `aud ${JSON.stringify(tokenAudiences).slice(0, 512)} contains none of the expected ${JSON.stringify(audiences)} (JWT-SVID §3.2)`,
    );
  }
  if (opts.authorize && !opts.authorize(id)) {
    return failure(
      'ERR_VERIFY_ID_NOT_AUTHORIZED',
      `SPIFFE ID ${id.toString()} is not authorized: expected ${opts.authorize.description}`,
    );
  }
  return { ok: true, id, trustDomain: td, claims, expiresAt: exp * 1000 };
}
