import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { BundleError } from '../../errors.js';
import { quoteUntrusted, untrustedText } from '../../untrusted-text.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import {
  isJsonObject,
  JsonNumber,
  type JsonObject,
  type JsonValue,
  jsonTypeName,
  parseJson,
} from './json.js';
import {
  type JwtAuthority,
  MAX_SEQUENCE,
  TrustBundle,
  type X509Authority,
  x509AuthorityFromDer,
} from './trust-bundle.js';

/** Default cap on a bundle document's size: 1 MiB. SPIRE's own bundles are a few KiB. */
export const DEFAULT_MAX_BUNDLE_BYTES = 1024 * 1024;
/** Default cap on the number of JWK entries in `keys`. */
export const DEFAULT_MAX_BUNDLE_KEYS = 1000;
/**
 * Longest `kid` accepted on a jwt-svid entry, in UTF-8 bytes. RFC 7517 §4.5 and JWT-SVID §6.1 set
 * no bound and go-spiffe sets none either; SPIRE mints 32-character key IDs, and other issuers use
 * UUIDs (36) or RFC 7638 thumbprints (43). 256 leaves ample room for those while keeping a
 * peer-chosen string that is quoted in logs, audit records and status short.
 */
export const MAX_KEY_ID_BYTES = 256;

/** `use` values (SPIFFE Trust Domain and Bundle §4.2.2; X509-SVID §6.1; JWT-SVID §6.1). */
const USE_X509 = 'x509-svid';
const USE_JWT = 'jwt-svid';
/** Key types this implementation understands; others are ignored (§4.2.1). */
const KNOWN_KTY = new Set(['EC', 'RSA', 'OKP']);
/** JWK members that carry private key material: never accepted from a peer. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'] as const;

/** Limits applied while parsing. */
export interface BundleParseOptions {
  /** Refuse documents larger than this many bytes. Default {@link DEFAULT_MAX_BUNDLE_BYTES}. */
  readonly maxBytes?: number;
  /** Refuse documents with more `keys` entries than this. Default {@link DEFAULT_MAX_BUNDLE_KEYS}. */
  readonly maxKeys?: number;
}

/** A JWK entry the parser skipped, as the spec requires, with the reason. */
export interface IgnoredEntry {
  /** Index in the `keys` array. */
  readonly index: number;
  readonly use?: string;
  readonly kty?: string;
  readonly kid?: string;
  readonly reason: string;
}

/** The outcome of a successful parse. */
export interface ParsedBundle {
  readonly bundle: TrustBundle;
  /** Entries skipped per the spec (unknown or missing `use`, unknown `kty`), in document order. */
  readonly ignored: readonly IgnoredEntry[];
}

function optString(obj: JsonObject, member: string, where: string): string | undefined {
  const v = obj[member];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') {
    throw new BundleError(
      'ERR_BUNDLE_KEY_MEMBER_TYPE',
      `${where}: member "${member}" must be a string, got ${jsonTypeName(v)}`,
    );
  }
  return v;
}

/**
 * True for RFC 4648 §4 standard base64 with padding, as x5c requires (RFC 7517 §4.7). A linear
 * scan, not a regular expression: V8 backtracks a quantified group by recursion, and a multi-MB
 * x5c overflowed its stack with a RangeError.
 */
function isStandardBase64(s: string): boolean {
  const n = s.length;
  if (n === 0 || n % 4 !== 0) return false;
  const pad = s.charCodeAt(n - 1) === 0x3d ? (s.charCodeAt(n - 2) === 0x3d ? 2 : 1) : 0;
  for (let i = 0; i < n - pad; i++) {
    const c = s.charCodeAt(i);
    const ok =
      (c >= 0x41 && c <= 0x5a) || // A-Z
      (c >= 0x61 && c <= 0x7a) || // a-z
      (c >= 0x30 && c <= 0x39) || // 0-9
      c === 0x2b || // +
      c === 0x2f; // /
    if (!ok) return false;
  }
  return true;
}

function jwkPublicKey(entry: JsonObject, kty: string, where: string): KeyObject {
  for (const m of PRIVATE_MEMBERS) {
    if (entry[m] !== undefined) {
      throw new BundleError('ERR_BUNDLE_JWK_INVALID', `${where}: contains private key material ("${m}")`);
    }
  }
  const jwk: JsonWebKey = { kty };
  for (const m of ['crv', 'x', 'y', 'n', 'e'] as const) {
    const v = optString(entry, m, where);
    if (v !== undefined) jwk[m] = v;
  }
  try {
    const key = createPublicKey({ key: jwk, format: 'jwk' });
    if (key.type !== 'public') throw new Error('not a public key');
    return key;
  } catch (cause) {
    throw new BundleError(
      'ERR_BUNDLE_JWK_INVALID',
      `${where}: invalid ${kty} JWK (${cause instanceof Error ? cause.message : String(cause)})`,
      { cause },
    );
  }
}

function parseX509Entry(entry: JsonObject, i: number, kty: string): X509Authority {
  const where = `x509-svid entry ${i}`;
  const x5c = entry.x5c;
  if (x5c !== undefined && !Array.isArray(x5c)) {
    throw new BundleError(
      'ERR_BUNDLE_KEY_MEMBER_TYPE',
      `${where}: "x5c" must be an array, got ${jsonTypeName(x5c)}`,
    );
  }
  // X509-SVID §6.1: exactly one certificate per entry. §6.2 would let a consumer ignore an entry with
  // none and use the first of several; like go-spiffe and SPIRE we refuse both (docs/conformance.md).
  const count = x5c?.length ?? 0;
  if (count !== 1) {
    throw new BundleError(
      'ERR_BUNDLE_X5C_COUNT',
      `expected a single certificate in x509-svid entry ${i}; got ${count}`,
    );
  }
  const b64 = x5c![0];
  if (typeof b64 !== 'string') {
    throw new BundleError(
      'ERR_BUNDLE_KEY_MEMBER_TYPE',
      `${where}: x5c[0] must be a string, got ${jsonTypeName(b64)}`,
    );
  }
  if (!isStandardBase64(b64)) {
    throw new BundleError(
      'ERR_BUNDLE_X5C_ENCODING',
      `${where}: x5c[0] is not standard base64 (RFC 7517 §4.7)`,
    );
  }
  const der = Buffer.from(b64, 'base64');
  const authority = x509AuthorityFromDer(der, where);
  // RFC 7517 §4.7: the key in x5c[0] MUST match the JWK's own key parameters.
  const jwkKey = jwkPublicKey(entry, kty, where);
  if (!jwkKey.equals(authority.certificate.publicKey)) {
    throw new BundleError(
      'ERR_BUNDLE_X5C_KEY_MISMATCH',
      `${where}: the JWK's public key does not match the public key of its x5c certificate`,
    );
  }
  return authority;
}

function parseJwtEntry(entry: JsonObject, i: number, kty: string): JwtAuthority {
  const where = `jwt-svid entry ${i}`;
  const kid = optString(entry, 'kid', where);
  // JWT-SVID §6.1: kid MUST be set.
  if (kid === undefined || kid.length === 0) {
    throw new BundleError('ERR_BUNDLE_JWT_KID_MISSING', `missing key ID in jwt-svid entry ${i}`);
  }
  // Not quoted in the message: a key ID this long is exactly what must not reach logs.
  const kidBytes = Buffer.byteLength(kid);
  if (kidBytes > MAX_KEY_ID_BYTES) {
    throw new BundleError(
      'ERR_BUNDLE_JWT_KID_TOO_LONG',
      `jwt-svid entry ${i}: key ID is ${kidBytes} bytes; the limit is ${MAX_KEY_ID_BYTES}`,
    );
  }
  const publicKey = jwkPublicKey(entry, kty, where);
  return {
    kid,
    publicKey,
    spki: new Uint8Array(publicKey.export({ type: 'spki', format: 'der' })),
    expiresAt: 0,
  };
}

function parseUint(v: JsonValue | undefined, member: string, max: bigint): bigint | undefined {
  if (v === undefined) return undefined;
  const code =
    member === 'spiffe_sequence' ? 'ERR_BUNDLE_SEQUENCE_INVALID' : 'ERR_BUNDLE_REFRESH_HINT_INVALID';
  if (!(v instanceof JsonNumber) || !v.isInteger() || v.raw.startsWith('-')) {
    throw new BundleError(
      code,
      `"${member}" must be a non-negative integer, got ${v instanceof JsonNumber ? v.raw : jsonTypeName(v)}`,
    );
  }
  const n = BigInt(v.raw);
  if (n > max) throw new BundleError(code, `"${member}" ${v.raw} exceeds the maximum ${max}`);
  return n;
}

/**
 * Interprets an already-parsed JWKS object as the SPIFFE bundle of `trustDomain`.
 * Shared by {@link parseBundle} and the Bundle Map parser.
 * @internal
 */
export function bundleFromJson(
  trustDomain: TrustDomain,
  doc: JsonValue,
  opts: BundleParseOptions = {},
  where = 'bundle',
): ParsedBundle {
  if (!isJsonObject(doc)) {
    throw new BundleError(
      'ERR_BUNDLE_NOT_OBJECT',
      `${where}: must be a JSON object, got ${jsonTypeName(doc)}`,
    );
  }
  // SPIFFE Trust Domain and Bundle §4.1.3: `keys` MUST be present; [] means "all keys revoked".
  const keys = doc.keys;
  if (keys === undefined || keys === null) {
    throw new BundleError(
      'ERR_BUNDLE_KEYS_MISSING',
      `${where}: "keys" is ${keys === null ? 'null' : 'missing'}`,
    );
  }
  if (!Array.isArray(keys)) {
    throw new BundleError(
      'ERR_BUNDLE_KEYS_NOT_ARRAY',
      `${where}: "keys" must be an array, got ${jsonTypeName(keys)}`,
    );
  }
  const maxKeys = opts.maxKeys ?? DEFAULT_MAX_BUNDLE_KEYS;
  if (keys.length > maxKeys) {
    throw new BundleError(
      'ERR_BUNDLE_TOO_MANY_KEYS',
      `${where}: ${keys.length} keys; the limit is ${maxKeys}`,
    );
  }
  // §4.1.1: a uint64 sequence; §4.1.2: the hint is an integer number of seconds.
  const sequence = parseUint(doc.spiffe_sequence, 'spiffe_sequence', MAX_SEQUENCE) ?? 0n;
  const hint =
    parseUint(doc.spiffe_refresh_hint, 'spiffe_refresh_hint', BigInt(Number.MAX_SAFE_INTEGER)) ?? 0n;

  const x509: X509Authority[] = [];
  const x509Seen = new Set<string>();
  const jwt: JwtAuthority[] = [];
  const kids = new Set<string>();
  const ignored: IgnoredEntry[] = [];
  for (let i = 0; i < keys.length; i++) {
    const entry = keys[i];
    if (!isJsonObject(entry)) {
      throw new BundleError(
        'ERR_BUNDLE_KEY_NOT_OBJECT',
        `key entry ${i} must be a JSON object, got ${jsonTypeName(entry)}`,
      );
    }
    const use = optString(entry, 'use', `key entry ${i}`);
    const kty = optString(entry, 'kty', `key entry ${i}`);
    const kid = optString(entry, 'kid', `key entry ${i}`);
    const note = (reason: string): void => {
      const item: { -readonly [K in keyof IgnoredEntry]: IgnoredEntry[K] } = { index: i, reason };
      // Peer-chosen strings, kept only for reports: bounded and printable (untrusted-text.ts).
      if (use !== undefined) item.use = untrustedText(use, 64);
      if (kty !== undefined) item.kty = untrustedText(kty, 64);
      if (kid !== undefined) item.kid = untrustedText(kid, MAX_KEY_ID_BYTES);
      ignored.push(item);
    };
    // §4.2.2: an entry with a missing or unknown `use` MUST be ignored entirely.
    if (use === undefined) {
      note('missing "use"');
      continue;
    }
    if (use !== USE_X509 && use !== USE_JWT) {
      note(`unsupported use ${quoteUntrusted(use, 64)}`);
      continue;
    }
    // §4.2.1: kty MUST be set (RFC 7517 §4.1); an unknown kty MUST be ignored.
    if (kty === undefined) {
      throw new BundleError('ERR_BUNDLE_JWK_INVALID', `${use} entry ${i}: "kty" is missing`);
    }
    if (!KNOWN_KTY.has(kty)) {
      note(`unknown kty ${quoteUntrusted(kty, 64)}`);
      continue;
    }
    if (use === USE_X509) {
      const a = parseX509Entry(entry, i, kty);
      if (x509Seen.has(a.sha256)) {
        throw new BundleError(
          'ERR_BUNDLE_X509_DUPLICATE',
          `x509-svid entry ${i} repeats an earlier certificate`,
        );
      }
      x509Seen.add(a.sha256);
      x509.push(a);
    } else {
      const a = parseJwtEntry(entry, i, kty);
      if (kids.has(a.kid)) {
        throw new BundleError(
          'ERR_BUNDLE_JWT_KID_DUPLICATE',
          `jwt-svid entry ${i}: key ID ${quoteUntrusted(a.kid)} is not unique`,
        );
      }
      kids.add(a.kid);
      jwt.push(a);
    }
  }
  const bundle = TrustBundle.create({
    trustDomain,
    x509Authorities: x509,
    jwtAuthorities: jwt,
    refreshHint: Number(hint),
    sequence,
  });
  return { bundle, ignored };
}

/**
 * Parses a SPIFFE bundle document (SPIFFE Trust Domain and Bundle §4) for `trustDomain`.
 *
 * Pure: takes bytes, returns a value or throws a coded {@link BundleError}. The document does not
 * name its trust domain, so the caller must (§4; Federation §5.1).
 *
 * @example
 * const { bundle, ignored } = parseBundle(TrustDomain.parse('example.org'), bytes);
 * @throws BundleError
 */
export function parseBundle(
  trustDomain: TrustDomain,
  bytes: Uint8Array | string,
  opts: BundleParseOptions = {},
): ParsedBundle {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BUNDLE_BYTES;
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength;
  if (size > maxBytes) {
    throw new BundleError(
      'ERR_BUNDLE_TOO_LARGE',
      `bundle document is ${size} bytes; the limit is ${maxBytes}`,
    );
  }
  try {
    return bundleFromJson(trustDomain, parseJson(bytes), opts);
  } catch (err) {
    throw codedParseFailure(err, 'bundle document');
  }
}

/**
 * Every parse failure is a coded {@link BundleError}: a peer's document must never surface as an
 * uncoded engine error (a `RangeError`, an OpenSSL decoder error) that callers would misreport,
 * e.g. as a connection failure. BundleErrors pass through; anything else becomes
 * `ERR_BUNDLE_UNPARSABLE` with the original as its cause.
 * @internal
 */
export function codedParseFailure(err: unknown, what: string): BundleError {
  if (err instanceof BundleError) return err;
  const detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return new BundleError('ERR_BUNDLE_UNPARSABLE', `${what} could not be parsed (${detail.slice(0, 200)})`, {
    cause: err,
  });
}

/** Options for {@link marshalBundle}. */
export interface MarshalOptions {
  /** Publish this refresh hint (seconds) instead of the bundle's own, as SPIRE's endpoint does. */
  readonly refreshHint?: number;
  /** Publish this sequence instead of the bundle's own. */
  readonly sequence?: bigint;
  /** Indentation for pretty output; compact when omitted. */
  readonly indent?: number;
}

function keyMembers(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  let out = `"kty":${JSON.stringify(jwk.kty)}`;
  for (const m of ['crv', 'x', 'y', 'n', 'e'] as const) {
    const v = jwk[m];
    if (typeof v === 'string') out += `,"${m}":${JSON.stringify(v)}`;
  }
  return out;
}

/**
 * Serializes a bundle as a SPIFFE bundle document that both real SPIRE and go-spiffe accept:
 * `keys` always present (`[]` when empty, §4.1.3), x509-svid entries with one standard-base64 x5c
 * certificate and no `kid` (X509-SVID §6.1), jwt-svid entries with their `kid` (JWT-SVID §6.1),
 * only those two `use` values (SPIRE's client refuses others), and `spiffe_refresh_hint` /
 * `spiffe_sequence` omitted when zero (as SPIRE does).
 */
export function marshalBundle(bundle: TrustBundle, opts: MarshalOptions = {}): string {
  const entries: string[] = [];
  for (const a of bundle.x509Authorities) {
    entries.push(
      `{"use":"${USE_X509}",${keyMembers(a.certificate.publicKey)},"x5c":["${Buffer.from(a.der).toString('base64')}"]}`,
    );
  }
  for (const a of bundle.jwtAuthorities.values()) {
    entries.push(`{"use":"${USE_JWT}","kid":${JSON.stringify(a.kid)},${keyMembers(a.publicKey)}}`);
  }
  const hint = opts.refreshHint ?? bundle.refreshHint;
  const seq = opts.sequence ?? bundle.sequence;
  let json = `{"keys":[${entries.join(',')}]`;
  if (hint > 0) json += `,"spiffe_refresh_hint":${hint}`;
  if (seq > 0n) json += `,"spiffe_sequence":${seq.toString()}`;
  json += '}';
  if (opts.indent !== undefined) {
    // Re-rendered through the strict reader so a uint64 sequence keeps its exact digits.
    return indentJson(json, opts.indent);
  }
  return json;
}

/** Re-indents compact JSON produced by this module, preserving number text exactly. */
function indentJson(json: string, indent: number): string {
  const pad = ' '.repeat(indent);
  const render = (v: JsonValue, depth: number): string => {
    if (v instanceof JsonNumber) return v.raw;
    if (v === null || typeof v !== 'object') return JSON.stringify(v);
    const inner = pad.repeat(depth + 1);
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      return `[\n${v.map((x) => inner + render(x, depth + 1)).join(',\n')}\n${pad.repeat(depth)}]`;
    }
    const names = Object.keys(v);
    if (names.length === 0) return '{}';
    return `{\n${names.map((k) => `${inner}${JSON.stringify(k)}: ${render(v[k]!, depth + 1)}`).join(',\n')}\n${pad.repeat(depth)}}`;
  };
  return render(parseJson(json), 0);
}
