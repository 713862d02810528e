import { createHash, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { BundleError } from '../../errors.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';

/** The largest value `spiffe_sequence` may take (uint64, SPIFFE Trust Domain and Bundle §4.1.1). */
export const MAX_SEQUENCE = (1n << 64n) - 1n;

/** An X.509 CA certificate trusted to sign X509-SVIDs of one trust domain. */
export interface X509Authority {
  /** The certificate's DER bytes, exactly as received. */
  readonly der: Uint8Array;
  /** The parsed certificate (node:crypto). */
  readonly certificate: X509Certificate;
  /** Lower-case hex SHA-256 of {@link X509Authority.der}: the authority's identity in diffs and logs. */
  readonly sha256: string;
  /** Expiry, milliseconds since the Unix epoch. */
  readonly notAfter: number;
}

/** A public key trusted to sign JWT-SVIDs of one trust domain. */
export interface JwtAuthority {
  /** The JWK `kid` (JWT-SVID §6.1: required, unique within the bundle). */
  readonly kid: string;
  readonly publicKey: KeyObject;
  /** PKIX (SubjectPublicKeyInfo) DER of the key: SPIRE's wire form and the key's identity. */
  readonly spki: Uint8Array;
  /** Expiry in Unix seconds when known (SPIRE carries it; SPIFFE bundle JSON does not), else 0. */
  readonly expiresAt: number;
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Builds an {@link X509Authority} from DER, requiring a CA certificate (X509-SVID §6.1: the x5c
 * entry holds a CA certificate).
 * @throws BundleError `ERR_BUNDLE_X5C_CERTIFICATE` when the bytes are not one certificate,
 *   `ERR_BUNDLE_X5C_NOT_CA` when it is not a CA.
 */
export function x509AuthorityFromDer(der: Uint8Array, where = 'X.509 authority'): X509Authority {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(der);
  } catch (cause) {
    throw new BundleError('ERR_BUNDLE_X5C_CERTIFICATE', `${where}: not a valid DER X.509 certificate`, {
      cause,
    });
  }
  try {
    // OpenSSL decodes the public key lazily; an authority whose key does not decode is not a usable
    // certificate (found by scripts/fuzz.ts; test/fuzz/regressions.test.ts).
    void certificate.publicKey;
  } catch (cause) {
    throw new BundleError(
      'ERR_BUNDLE_X5C_CERTIFICATE',
      `${where}: the certificate's public key cannot be decoded`,
      {
        cause,
      },
    );
  }
  if (!certificate.ca) {
    throw new BundleError(
      'ERR_BUNDLE_X5C_NOT_CA',
      `${where}: certificate ${certificate.subject.replace(/\n/g, ', ')} is not a CA certificate`,
    );
  }
  const bytes = Uint8Array.from(der);
  return {
    der: bytes,
    certificate,
    sha256: sha256Hex(bytes),
    notAfter: Date.parse(certificate.validTo),
  };
}

/**
 * Builds a {@link JwtAuthority} from a key ID and a public key (a KeyObject, or PKIX DER bytes).
 * @throws BundleError `ERR_BUNDLE_JWT_KID_MISSING`, `ERR_BUNDLE_JWK_INVALID`
 */
export function jwtAuthority(kid: string, key: KeyObject | Uint8Array, expiresAt = 0): JwtAuthority {
  if (kid.length === 0) {
    throw new BundleError('ERR_BUNDLE_JWT_KID_MISSING', 'JWT authority: key ID cannot be empty');
  }
  let publicKey: KeyObject;
  try {
    publicKey =
      key instanceof Uint8Array
        ? createPublicKey({ key: Buffer.from(key), format: 'der', type: 'spki' })
        : key.type === 'private'
          ? createPublicKey(key)
          : key;
  } catch (cause) {
    throw new BundleError('ERR_BUNDLE_JWK_INVALID', `JWT authority "${kid}": not a valid public key`, {
      cause,
    });
  }
  if (publicKey.type !== 'public') {
    throw new BundleError('ERR_BUNDLE_JWK_INVALID', `JWT authority "${kid}": not a public key`);
  }
  const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
  return { kid, publicKey, spki, expiresAt };
}

/** What {@link TrustBundle.create} takes. */
export interface TrustBundleInit {
  readonly trustDomain: TrustDomain;
  /** CA certificates, as DER or already-built authorities. Duplicates (same DER) are refused. */
  readonly x509Authorities?: readonly (Uint8Array | X509Authority)[];
  readonly jwtAuthorities?: readonly JwtAuthority[];
  /** Seconds; 0 means unset. */
  readonly refreshHint?: number;
  /** uint64; 0n means unset. */
  readonly sequence?: bigint;
}

/**
 * A trust domain's trust bundle (SPIFFE Trust Domain and Bundle §3): its X.509 authorities, JWT
 * authorities, refresh hint and sequence number — always bound to its trust domain name, since the
 * document itself does not carry it (§4; SPIFFE Federation §4.2: never merged across domains).
 *
 * Immutable. An empty bundle (no authorities) is valid and means the trust domain revoked all its
 * keys (§4.1.3).
 */
export class TrustBundle {
  readonly trustDomain: TrustDomain;
  readonly x509Authorities: readonly X509Authority[];
  /** By `kid`, in insertion order. */
  readonly jwtAuthorities: ReadonlyMap<string, JwtAuthority>;
  /** `spiffe_refresh_hint` in seconds; 0 when unset. */
  readonly refreshHint: number;
  /** `spiffe_sequence`; 0n when unset. */
  readonly sequence: bigint;

  private constructor(
    trustDomain: TrustDomain,
    x509: readonly X509Authority[],
    jwt: ReadonlyMap<string, JwtAuthority>,
    refreshHint: number,
    sequence: bigint,
  ) {
    this.trustDomain = trustDomain;
    this.x509Authorities = x509;
    this.jwtAuthorities = jwt;
    this.refreshHint = refreshHint;
    this.sequence = sequence;
    Object.freeze(this);
  }

  /**
   * Builds a bundle, validating every part.
   * @throws BundleError on an invalid certificate, duplicate authority, duplicate kid, a negative or
   *   non-integer refresh hint, or a sequence outside uint64.
   */
  static create(init: TrustBundleInit): TrustBundle {
    const refreshHint = init.refreshHint ?? 0;
    if (!Number.isSafeInteger(refreshHint) || refreshHint < 0) {
      throw new BundleError(
        'ERR_BUNDLE_REFRESH_HINT_INVALID',
        `refresh hint must be a non-negative integer number of seconds, got ${refreshHint}`,
      );
    }
    const sequence = init.sequence ?? 0n;
    if (sequence < 0n || sequence > MAX_SEQUENCE) {
      throw new BundleError('ERR_BUNDLE_SEQUENCE_INVALID', `sequence ${sequence} is outside 0..2^64-1`);
    }
    const x509: X509Authority[] = [];
    const seen = new Set<string>();
    for (const [i, a] of (init.x509Authorities ?? []).entries()) {
      const auth = a instanceof Uint8Array ? x509AuthorityFromDer(a, `X.509 authority ${i}`) : a;
      if (seen.has(auth.sha256)) {
        throw new BundleError(
          'ERR_BUNDLE_X509_DUPLICATE',
          `X.509 authority ${i} (sha256 ${auth.sha256}) appears more than once`,
        );
      }
      seen.add(auth.sha256);
      x509.push(auth);
    }
    const jwt = new Map<string, JwtAuthority>();
    for (const a of init.jwtAuthorities ?? []) {
      if (a.kid.length === 0) {
        throw new BundleError('ERR_BUNDLE_JWT_KID_MISSING', 'JWT authority: key ID cannot be empty');
      }
      if (jwt.has(a.kid)) {
        throw new BundleError(
          'ERR_BUNDLE_JWT_KID_DUPLICATE',
          `JWT authority key ID "${a.kid}" is not unique`,
        );
      }
      jwt.set(a.kid, a);
    }
    return new TrustBundle(init.trustDomain, Object.freeze(x509), jwt, refreshHint, sequence);
  }

  /** True when the bundle holds no authority at all: every SVID of the domain is invalid (§4.1.3). */
  isEmpty(): boolean {
    return this.x509Authorities.length === 0 && this.jwtAuthorities.size === 0;
  }

  /** A copy with another sequence number. */
  withSequence(sequence: bigint): TrustBundle {
    return TrustBundle.create({ ...this.#init(), sequence });
  }

  /** A copy with another refresh hint (seconds). */
  withRefreshHint(refreshHint: number): TrustBundle {
    return TrustBundle.create({ ...this.#init(), refreshHint });
  }

  /** Earliest expiry among the authorities that carry one (ms since epoch), or undefined. */
  earliestExpiry(): { x509?: number; jwt?: number } {
    let x509: number | undefined;
    for (const a of this.x509Authorities) x509 = x509 === undefined ? a.notAfter : Math.min(x509, a.notAfter);
    let jwt: number | undefined;
    for (const a of this.jwtAuthorities.values()) {
      if (a.expiresAt > 0) jwt = jwt === undefined ? a.expiresAt * 1000 : Math.min(jwt, a.expiresAt * 1000);
    }
    const out: { x509?: number; jwt?: number } = {};
    if (x509 !== undefined) out.x509 = x509;
    if (jwt !== undefined) out.jwt = jwt;
    return out;
  }

  #init(): TrustBundleInit {
    return {
      trustDomain: this.trustDomain,
      x509Authorities: this.x509Authorities,
      jwtAuthorities: [...this.jwtAuthorities.values()],
      refreshHint: this.refreshHint,
      sequence: this.sequence,
    };
  }
}
