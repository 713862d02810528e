/**
 * Pure conversions between the broker's types ({@link TrustBundle}, {@link SpiffeId}) and the SPIRE
 * server API's wire shapes ({@link WireBundle} …). No gRPC, no I/O: usable by the client, the
 * emulator and tests alike.
 *
 * Wire facts (spire-api-sdk v1.15 `spire/api/types/bundle.proto`; SPIRE `pkg/server/api/bundle.go`):
 * X.509 authorities travel as DER in `asn1`; JWT authorities as PKIX (SubjectPublicKeyInfo) DER in
 * `public_key` with `key_id` and `expires_at` (Unix seconds, 0 = none); `refresh_hint` is int64
 * seconds and `sequence_number` uint64 — both decimal strings here, never lossy numbers.
 * @module
 */

import {
  type JwtAuthority,
  jwtAuthority,
  MAX_SEQUENCE,
  TrustBundle,
} from '../../core/bundle/trust-bundle.js';
import { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { BrokerError, SpireError } from '../../errors.js';
import type {
  WireBundle,
  WireBundleMask,
  WireFederationRelationship,
  WireFederationRelationshipMask,
  WireX509Svid,
} from './wire.js';

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

function conversion(message: string, cause?: unknown): SpireError {
  return new SpireError('ERR_SPIRE_CONVERSION', message, cause === undefined ? undefined : { cause });
}

function toBigInt(value: unknown, field: string): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw conversion(`${field}: ${value} is not a safe integer`);
    return BigInt(value);
  }
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return BigInt(value);
  throw conversion(`${field}: expected a decimal integer, got ${JSON.stringify(value)}`);
}

/**
 * Reads a protobuf int64 that arrived as a decimal string (or number).
 * @throws SpireError `ERR_SPIRE_CONVERSION` when it is not an integer within int64.
 */
export function parseInt64(value: unknown, field: string): bigint {
  const n = toBigInt(value, field);
  if (n < INT64_MIN || n > INT64_MAX) throw conversion(`${field}: ${n} is outside int64`);
  return n;
}

/**
 * Reads a protobuf uint64 that arrived as a decimal string (or number).
 * @throws SpireError `ERR_SPIRE_CONVERSION` when it is not an integer within uint64.
 */
export function parseUint64(value: unknown, field: string): bigint {
  const n = toBigInt(value, field);
  if (n < 0n || n > MAX_SEQUENCE) throw conversion(`${field}: ${n} is outside uint64`);
  return n;
}

/** A non-negative int64 that must also fit a JavaScript safe integer (seconds). */
function nonNegativeSeconds(value: unknown, field: string): number {
  const n = parseInt64(value, field);
  if (n < 0n) throw conversion(`${field}: ${n} is negative`);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw conversion(`${field}: ${n} is too large`);
  return Number(n);
}

/**
 * Splits bytes holding one or more concatenated DER values (each a SEQUENCE) into the individual
 * encodings. SPIRE checks `x509_authorities[].asn1` with Go's `x509.ParseCertificates`, which
 * accepts such concatenations, so a stored authority may hold several certificates.
 *
 * @throws SpireError `ERR_SPIRE_CONVERSION` on empty input, a non-SEQUENCE, or a truncated length.
 */
export function splitDerSequence(bytes: Uint8Array, field: string): Uint8Array[] {
  if (bytes.length === 0) throw conversion(`${field}: is empty`);
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < bytes.length) {
    const start = i;
    if (bytes[i] !== 0x30) {
      throw conversion(`${field}: byte ${i} is not the start of a DER SEQUENCE`);
    }
    i += 1;
    const first = bytes[i];
    if (first === undefined) throw conversion(`${field}: DER length missing at byte ${i}`);
    i += 1;
    let length: number;
    if (first < 0x80) {
      length = first;
    } else {
      const n = first & 0x7f;
      // DER: no indefinite lengths; lengths above 4 octets are not certificates.
      if (n === 0 || n > 4) throw conversion(`${field}: unsupported DER length form at byte ${i - 1}`);
      length = 0;
      for (let k = 0; k < n; k++) {
        const b = bytes[i];
        if (b === undefined) throw conversion(`${field}: DER length truncated at byte ${i}`);
        length = length * 256 + b;
        i += 1;
      }
    }
    if (i + length > bytes.length) {
      throw conversion(
        `${field}: DER value at byte ${start} claims ${length} bytes, only ${bytes.length - i} remain`,
      );
    }
    i += length;
    out.push(bytes.subarray(start, i));
  }
  return out;
}

/** Which bundle fields a mask selects, in the broker's naming. `trust_domain` is always included. */
export interface BundleFields {
  readonly x509Authorities?: boolean;
  readonly jwtAuthorities?: boolean;
  readonly refreshHint?: boolean;
  readonly sequenceNumber?: boolean;
}

/** A {@link WireBundleMask} from {@link BundleFields} (unset fields are false; WIT never requested). */
export function bundleMaskToWire(fields: BundleFields): WireBundleMask {
  return {
    x509_authorities: fields.x509Authorities ?? false,
    jwt_authorities: fields.jwtAuthorities ?? false,
    refresh_hint: fields.refreshHint ?? false,
    sequence_number: fields.sequenceNumber ?? false,
    wit_authorities: false,
  };
}

/**
 * The wire form of a bundle, as the broker writes it to SPIRE. `tainted` flags are false and no
 * WIT authorities are sent (SPIRE v1.15 ignores both on input).
 */
export function bundleToWire(bundle: TrustBundle): WireBundle {
  return {
    trust_domain: bundle.trustDomain.name,
    x509_authorities: bundle.x509Authorities.map((a) => ({ asn1: Buffer.from(a.der), tainted: false })),
    jwt_authorities: [...bundle.jwtAuthorities.values()].map((a) => ({
      public_key: Buffer.from(a.spki),
      key_id: a.kid,
      expires_at: String(a.expiresAt),
      tainted: false,
    })),
    refresh_hint: String(bundle.refreshHint),
    sequence_number: bundle.sequence.toString(),
    wit_authorities: [],
  };
}

/** Options of {@link bundleFromWire}. */
export interface BundleFromWireOptions {
  /** When given, the bundle must belong to this trust domain. */
  readonly expectedTrustDomain?: TrustDomain;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/**
 * Converts a bundle received from SPIRE into a {@link TrustBundle}.
 *
 * - An `asn1` holding several concatenated certificates becomes several authorities.
 * - Exact duplicates (same DER; same kid, key and expiry) are kept once, since SPIRE does not
 *   de-duplicate on BatchSet; a kid repeated with a different key is refused.
 * - `tainted` flags and WIT authorities have no place in {@link TrustBundle} and are dropped.
 *
 * @throws SpireError `ERR_SPIRE_CONVERSION` naming the bundle and field that failed (the
 *   underlying BundleError/SpiffeIdError is the `cause`).
 */
export function bundleFromWire(wire: WireBundle, options: BundleFromWireOptions = {}): TrustBundle {
  const name = wire.trust_domain;
  const where = `bundle "${name}"`;
  let trustDomain: TrustDomain;
  try {
    trustDomain = TrustDomain.parse(name);
  } catch (cause) {
    throw conversion(`${where}: trust_domain is not a valid trust domain name`, cause);
  }
  if (options.expectedTrustDomain && !options.expectedTrustDomain.equals(trustDomain)) {
    throw conversion(
      `${where}: expected the bundle of "${options.expectedTrustDomain.name}", got "${trustDomain.name}"`,
    );
  }
  const refreshHint = nonNegativeSeconds(wire.refresh_hint, `${where}: refresh_hint`);
  const sequence = parseUint64(wire.sequence_number, `${where}: sequence_number`);

  const x509: Uint8Array[] = [];
  for (const [i, a] of (wire.x509_authorities ?? []).entries()) {
    for (const der of splitDerSequence(a.asn1, `${where}: x509_authorities[${i}].asn1`)) {
      if (!x509.some((d) => sameBytes(d, der))) x509.push(der);
    }
  }
  const jwt: JwtAuthority[] = [];
  for (const [i, k] of (wire.jwt_authorities ?? []).entries()) {
    const field = `${where}: jwt_authorities[${i}]`;
    const expiresAt = nonNegativeSeconds(k.expires_at, `${field}.expires_at`);
    const existing = jwt.find((j) => j.kid === k.key_id);
    if (existing && sameBytes(existing.spki, k.public_key) && existing.expiresAt === expiresAt) continue;
    try {
      jwt.push(jwtAuthority(k.key_id, Uint8Array.from(k.public_key), expiresAt));
    } catch (cause) {
      throw conversion(`${field}: ${cause instanceof Error ? cause.message : String(cause)}`, cause);
    }
  }
  try {
    return TrustBundle.create({
      trustDomain,
      x509Authorities: x509,
      jwtAuthorities: jwt,
      refreshHint,
      sequence,
    });
  } catch (cause) {
    if (cause instanceof BrokerError) throw conversion(`${where}: ${cause.message}`, cause);
    throw cause;
  }
}

/** How a federated trust domain's bundle endpoint authenticates (SPIFFE Federation §5.2). */
export type BundleEndpointProfile =
  | { readonly type: 'https_web' }
  | { readonly type: 'https_spiffe'; readonly endpointSpiffeId: SpiffeId };

/** A SPIRE federation relationship in broker terms. */
export interface FederationRelationship {
  readonly trustDomain: TrustDomain;
  /** `''` when the output mask left it out. */
  readonly bundleEndpointUrl: string;
  /** Undefined when the output mask left it out. */
  readonly profile?: BundleEndpointProfile;
  /** The bundle SPIRE stores for the trust domain, when it has one (and the mask asked for it). */
  readonly trustDomainBundle?: TrustBundle;
}

/**
 * Converts a relationship received from SPIRE. A present-but-empty `https_web` (SPIRE encodes it
 * as field 3 with zero length) selects the https_web profile.
 * @throws SpireError `ERR_SPIRE_CONVERSION`
 */
export function relationshipFromWire(wire: WireFederationRelationship): FederationRelationship {
  const where = `federation relationship "${wire.trust_domain}"`;
  let trustDomain: TrustDomain;
  try {
    trustDomain = TrustDomain.parse(wire.trust_domain);
  } catch (cause) {
    throw conversion(`${where}: trust_domain is not a valid trust domain name`, cause);
  }
  let profile: BundleEndpointProfile | undefined;
  const which =
    wire.bundle_endpoint_profile ??
    (wire.https_spiffe ? 'https_spiffe' : wire.https_web ? 'https_web' : undefined);
  if (which === 'https_web') {
    profile = { type: 'https_web' };
  } else if (which === 'https_spiffe') {
    const raw = wire.https_spiffe?.endpoint_spiffe_id ?? '';
    try {
      profile = { type: 'https_spiffe', endpointSpiffeId: SpiffeId.parse(raw) };
    } catch (cause) {
      throw conversion(
        `${where}: https_spiffe.endpoint_spiffe_id ${JSON.stringify(raw)} is not a SPIFFE ID`,
        cause,
      );
    }
  }
  const out: {
    trustDomain: TrustDomain;
    bundleEndpointUrl: string;
    profile?: BundleEndpointProfile;
    trustDomainBundle?: TrustBundle;
  } = { trustDomain, bundleEndpointUrl: wire.bundle_endpoint_url };
  if (profile) out.profile = profile;
  if (wire.trust_domain_bundle) {
    out.trustDomainBundle = bundleFromWire(wire.trust_domain_bundle, { expectedTrustDomain: trustDomain });
  }
  return out;
}

/** The wire form of a relationship (for creating one in SPIRE or the emulator). */
export function relationshipToWire(rel: FederationRelationship): WireFederationRelationship {
  const out: WireFederationRelationship = {
    trust_domain: rel.trustDomain.name,
    bundle_endpoint_url: rel.bundleEndpointUrl,
    trust_domain_bundle: rel.trustDomainBundle ? bundleToWire(rel.trustDomainBundle) : null,
  };
  if (rel.profile?.type === 'https_web') out.https_web = {};
  if (rel.profile?.type === 'https_spiffe') {
    out.https_spiffe = { endpoint_spiffe_id: rel.profile.endpointSpiffeId.toString() };
  }
  return out;
}

/** Which relationship fields a mask selects (`trust_domain` is always included). */
export interface RelationshipFields {
  readonly bundleEndpointUrl?: boolean;
  readonly bundleEndpointProfile?: boolean;
  readonly trustDomainBundle?: boolean;
}

/** A {@link WireFederationRelationshipMask} from {@link RelationshipFields} (unset = false). */
export function relationshipMaskToWire(fields: RelationshipFields): WireFederationRelationshipMask {
  return {
    bundle_endpoint_url: fields.bundleEndpointUrl ?? false,
    bundle_endpoint_profile: fields.bundleEndpointProfile ?? false,
    trust_domain_bundle: fields.trustDomainBundle ?? false,
  };
}

/** An X509-SVID minted by SPIRE (MintX509SVID). */
export interface MintedX509Svid {
  readonly id: SpiffeId;
  /** DER certificates, leaf first. */
  readonly certChain: readonly Uint8Array[];
  /** Leaf expiry, Unix seconds. */
  readonly expiresAt: number;
  readonly hint: string;
}

/**
 * Converts an X509-SVID received from SPIRE.
 * @throws SpireError `ERR_SPIRE_CONVERSION` when the ID is missing or invalid, the chain is
 *   empty, or the expiry is out of range.
 */
export function x509SvidFromWire(wire: WireX509Svid): MintedX509Svid {
  if (!wire.id) throw conversion('X509-SVID: id is missing');
  const raw = `spiffe://${wire.id.trust_domain}${wire.id.path}`;
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(raw);
  } catch (cause) {
    throw conversion(`X509-SVID: id ${JSON.stringify(raw)} is not a SPIFFE ID`, cause);
  }
  if (wire.cert_chain.length === 0) throw conversion(`X509-SVID ${raw}: cert_chain is empty`);
  return {
    id,
    certChain: wire.cert_chain.map((c) => Uint8Array.from(c)),
    expiresAt: nonNegativeSeconds(wire.expires_at, `X509-SVID ${raw}: expires_at`),
    hint: wire.hint,
  };
}
