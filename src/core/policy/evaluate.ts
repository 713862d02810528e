import type { KeyObject } from 'node:crypto';
import { PolicyError } from '../../errors.js';
import { DEFAULT_PEER_BUNDLE_BYTES } from '../bundle/bundle-map.js';
import { DEFAULT_MAX_BUNDLE_KEYS, marshalBundle } from '../bundle/codec.js';
import { type BundleDiff, bundlesEqual, diffBundles } from '../bundle/diff.js';
import type { TrustBundle } from '../bundle/trust-bundle.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';

/** JWK key type names (RFC 7518 §6.1, RFC 8037 for OKP). */
export type KeyTypeName = 'EC' | 'RSA' | 'OKP';

/**
 * Limits on what a peer may publish. Structurally the allowlist's `KeyPolicyConfig` (config
 * depends on the core, never the reverse), so a parsed `PeerConfig` is accepted as is.
 */
export interface KeyPolicy {
  /** Maximum authorities (X.509 + JWT) in one bundle. Default: no limit beyond the parser's. */
  readonly maxKeys?: number;
  /** Allowed key types. Default EC, RSA, OKP. */
  readonly allowedKeyTypes?: readonly KeyTypeName[];
  /** Allowed EC / OKP curves (JOSE names). Default P-256, P-384, P-521, Ed25519. */
  readonly allowedCurves?: readonly string[];
  /** Minimum RSA modulus length in bits. Default 2048. */
  readonly minRsaBits?: number;
  /**
   * Largest accepted bundle, in bytes as the broker serves it in a Bundle Map (`/v1/bundles`).
   * Default {@link DEFAULT_PEER_BUNDLE_BYTES} (64 KiB): the map consumers' default limit is sized
   * for 1,024 peers at this cap, so one peer cannot make the map too large for them.
   */
  readonly maxBundleBytes?: number;
}

/**
 * Most authorities one accepted bundle may hold whatever the key policy says: the per-bundle key
 * cap every Bundle Map consumer applies by default, so an accepted bundle never makes the map
 * unreadable.
 */
export const MAX_ACCEPTED_BUNDLE_KEYS = DEFAULT_MAX_BUNDLE_KEYS;

/** What policy needs to know about a peer: the subset of an allowlist entry (`PeerConfig`). */
export interface PeerPolicy {
  readonly trustDomain: TrustDomain;
  readonly keyPolicy: KeyPolicy;
  /** Whether an empty bundle (revoke everything) may be accepted. */
  readonly allowEmptyBundle: boolean;
}

/** Defaults applied where a key policy leaves a limit unset. */
export const DEFAULT_KEY_POLICY: Required<Omit<KeyPolicy, 'maxKeys'>> = Object.freeze({
  allowedKeyTypes: Object.freeze(['EC', 'RSA', 'OKP'] as const),
  allowedCurves: Object.freeze(['P-256', 'P-384', 'P-521', 'Ed25519']),
  minRsaBits: 2048,
  maxBundleBytes: DEFAULT_PEER_BUNDLE_BYTES,
});

/** The input of {@link evaluatePeerBundle}. */
export interface PeerBundleInput {
  readonly peer: PeerPolicy;
  /** The last accepted bundle of this peer, if any. */
  readonly current?: TrustBundle | undefined;
  /** The freshly fetched and parsed bundle. */
  readonly candidate: TrustBundle;
  /**
   * The persisted `spiffe_sequence` high-water mark of this peer (the highest sequence accepted
   * since the last operator reset), when one is recorded. It guards against rollback even when
   * no current bundle is held — after a restart that lost the last-known-good file, say.
   */
  readonly sequenceFloor?: bigint | undefined;
}

/** The decision on a candidate bundle. */
export type PeerBundleDecision =
  | {
      readonly accepted: true;
      /** Authorities added/removed/changed relative to `current` (everything added when none). */
      readonly diff: BundleDiff;
      /** False when the candidate equals `current` in every respect (authorities, hint, sequence). */
      readonly changed: boolean;
    }
  | { readonly accepted: false; readonly error: PolicyError };

/**
 * Decides whether a validated candidate bundle may replace a peer's current bundle. Pure.
 *
 * Checks, in order (the first failure is returned):
 * 1. Trust domain: the candidate must be bound to the entry's trust domain — defensive, as the
 *    fetcher binds it (SPIFFE Federation §4.2: bundles are never merged or re-bound).
 *    `ERR_POLICY_TRUST_DOMAIN_MISMATCH` (a PolicyError, so every refusal here has one type).
 * 2. Sequence (SPIFFE Trust Domain and Bundle §4.1.1; Federation §4.2 orders freshness by it):
 *    - lower than the current one's: rollback, `ERR_POLICY_SEQUENCE_ROLLBACK`;
 *    - unset (0) after the peer had published one: also a rollback — a peer that stops
 *      sequencing would otherwise switch the check off;
 *    - equal and non-zero but with different authorities: `ERR_POLICY_SEQUENCE_REUSED` (the spec
 *      says the sequence changes whenever the contents do). A changed refresh hint alone is
 *      accepted: it carries no trust;
 *    - when the current bundle has no sequence (0) nothing can be ordered and any candidate
 *      passes this step (Federation §4.2: the most recently fetched bundle is current).
 *    - against the persisted high-water mark (`sequenceFloor`), whether or not a current bundle
 *      is held: lower, or unset after a non-zero mark, is `ERR_POLICY_SEQUENCE_ROLLBACK`. Equal
 *      to the mark with no current bundle passes (the keys it was accepted with are not known).
 *    After an operator's deliberate reset use {@link resetSequenceBaseline} and drop the floor.
 * 3. Empty bundle (TDB §4.1.3: it revokes every SVID of the domain): refused unless the entry
 *    sets `allowEmptyBundle`, `ERR_POLICY_EMPTY_BUNDLE_REFUSED`.
 * 4. Key policy ({@link checkKeyPolicy}): count, size as served, key types, curves, RSA size.
 *
 * @example
 * const d = evaluatePeerBundle({ peer, current, candidate });
 * if (!d.accepted) audit.bundleRefused(peer.trustDomain, d.error);
 * else if (d.changed) await publish(candidate, d.diff);
 */
export function evaluatePeerBundle(input: PeerBundleInput): PeerBundleDecision {
  const { peer, current, candidate } = input;
  const td = peer.trustDomain.name;
  const floor = input.sequenceFloor ?? 0n;
  if (!candidate.trustDomain.equals(peer.trustDomain)) {
    return refuse(
      'ERR_POLICY_TRUST_DOMAIN_MISMATCH',
      `bundle for ${candidate.trustDomain.name} offered for allowlist entry ${td}`,
    );
  }
  if (current && !current.trustDomain.equals(peer.trustDomain)) {
    throw new TypeError(
      `evaluatePeerBundle: current bundle belongs to ${current.trustDomain.name}, not ${td}`,
    );
  }
  if (current && current.sequence > 0n) {
    if (candidate.sequence === 0n) {
      return refuse(
        'ERR_POLICY_SEQUENCE_ROLLBACK',
        `${td}: bundle has no spiffe_sequence but the last accepted one had ${current.sequence}; refusing a possible rollback (reset the sequence baseline to accept it)`,
      );
    }
    if (candidate.sequence < current.sequence) {
      return refuse(
        'ERR_POLICY_SEQUENCE_ROLLBACK',
        `${td}: spiffe_sequence went back from ${current.sequence} to ${candidate.sequence}`,
      );
    }
    if (
      candidate.sequence === current.sequence &&
      !bundlesEqual(current, candidate, { sequence: false, refreshHint: false })
    ) {
      return refuse(
        'ERR_POLICY_SEQUENCE_REUSED',
        `${td}: authorities changed but spiffe_sequence stayed ${current.sequence}`,
      );
    }
  }
  // TDB §4.1.1 across restarts: the persisted mark outlives the bundle it was raised by.
  if (floor > 0n && (candidate.sequence === 0n || candidate.sequence < floor)) {
    return refuse(
      'ERR_POLICY_SEQUENCE_ROLLBACK',
      candidate.sequence === 0n
        ? `${td}: bundle has no spiffe_sequence but the persisted high-water mark is ${floor}; refusing a possible rollback (reset the sequence baseline to accept it)`
        : `${td}: spiffe_sequence ${candidate.sequence} is below the persisted high-water mark ${floor}; refusing a rollback (reset the sequence baseline to accept it)`,
    );
  }
  if (candidate.isEmpty() && !peer.allowEmptyBundle) {
    return refuse(
      'ERR_POLICY_EMPTY_BUNDLE_REFUSED',
      `${td}: the peer published an empty bundle (revoking every key); refused because allowEmptyBundle is not set — the previous bundle stays in force`,
    );
  }
  const keyError = checkKeyPolicy(candidate, peer.keyPolicy);
  if (keyError) return { accepted: false, error: keyError };
  return {
    accepted: true,
    diff: diffBundles(current, candidate),
    changed: current === undefined || !bundlesEqual(current, candidate),
  };
}

function refuse(code: PolicyError['code'], message: string): PeerBundleDecision {
  return { accepted: false, error: new PolicyError(code, message) };
}

/**
 * The operator's explicit sequence reset, as a pure step: returns the current bundle with its
 * sequence cleared, to pass as `current` to the next {@link evaluatePeerBundle}. The next
 * candidate is then accepted whatever its sequence (step 2 is skipped once), while its diff is
 * still computed against the current authorities. Use it only on an operator's request (e.g. the
 * peer rebuilt its trust domain and restarted at 1) and audit it.
 */
export function resetSequenceBaseline(current: TrustBundle): TrustBundle {
  return current.withSequence(0n);
}

/**
 * Finds the allowlist entry for a trust domain.
 * @throws PolicyError `ERR_POLICY_NOT_ALLOWLISTED` when there is none.
 */
export function requireAllowlisted<P extends PeerPolicy>(peers: readonly P[], trustDomain: TrustDomain): P {
  const p = peers.find((x) => x.trustDomain.equals(trustDomain));
  if (!p) {
    throw new PolicyError(
      'ERR_POLICY_NOT_ALLOWLISTED',
      `trust domain ${trustDomain.name} is not in the allowlist`,
    );
  }
  return p;
}

/** A public key described in JOSE terms. */
export interface KeyDescription {
  /** JWK kty, or undefined for key types that cannot sign SVIDs (DSA, DH, X25519, X448). */
  readonly kty: KeyTypeName | undefined;
  /** JOSE curve name for EC and OKP keys (`P-256`, `Ed25519`); OpenSSL name when unknown to JOSE. */
  readonly curve?: string;
  /** RSA modulus length in bits. */
  readonly bits?: number;
  /** node:crypto's asymmetricKeyType, for messages. */
  readonly nodeType: string;
}

const NODE_EC_CURVES: Readonly<Record<string, string>> = {
  prime256v1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
};

/** Describes a node:crypto public key in JOSE terms (kty, crv, modulus size). */
export function describePublicKey(key: KeyObject): KeyDescription {
  const nodeType = key.asymmetricKeyType ?? 'unknown';
  const details = key.asymmetricKeyDetails ?? {};
  switch (nodeType) {
    case 'ec': {
      const c = details.namedCurve ?? 'unknown';
      return { kty: 'EC', curve: NODE_EC_CURVES[c] ?? c, nodeType };
    }
    case 'rsa':
    case 'rsa-pss':
      return details.modulusLength === undefined
        ? { kty: 'RSA', nodeType }
        : { kty: 'RSA', bits: details.modulusLength, nodeType };
    case 'ed25519':
      return { kty: 'OKP', curve: 'Ed25519', nodeType };
    case 'ed448':
      return { kty: 'OKP', curve: 'Ed448', nodeType };
    default:
      return { kty: undefined, nodeType };
  }
}

/**
 * Checks a bundle against a key policy: number of authorities (never above
 * {@link MAX_ACCEPTED_BUNDLE_KEYS}), its size as served in a Bundle Map (`maxBundleBytes`,
 * `ERR_POLICY_BUNDLE_TOO_LARGE`), key type, curve and RSA size of
 * every X.509 authority's public key and every JWT authority. Returns the first violation, naming
 * the authority (X.509 by SHA-256 prefix, JWT by kid), or undefined when the bundle complies.
 */
export function checkKeyPolicy(bundle: TrustBundle, policy: KeyPolicy): PolicyError | undefined {
  const td = bundle.trustDomain.name;
  const total = bundle.x509Authorities.length + bundle.jwtAuthorities.size;
  const maxKeys = Math.min(policy.maxKeys ?? MAX_ACCEPTED_BUNDLE_KEYS, MAX_ACCEPTED_BUNDLE_KEYS);
  if (total > maxKeys) {
    return new PolicyError(
      'ERR_POLICY_TOO_MANY_KEYS',
      `${td}: bundle has ${total} authorities; the key policy allows at most ${maxKeys}`,
    );
  }
  // The size the bundle takes in the broker's Bundle Map (per-bundle hints are omitted there).
  const maxBytes = policy.maxBundleBytes ?? DEFAULT_KEY_POLICY.maxBundleBytes;
  const bytes = Buffer.byteLength(marshalBundle(bundle, { refreshHint: 0 }));
  if (bytes > maxBytes) {
    return new PolicyError(
      'ERR_POLICY_BUNDLE_TOO_LARGE',
      `${td}: bundle is ${bytes} bytes as served; the key policy allows at most ${maxBytes} (maxBundleBytes)`,
    );
  }
  const types = policy.allowedKeyTypes ?? DEFAULT_KEY_POLICY.allowedKeyTypes;
  const curves = policy.allowedCurves ?? DEFAULT_KEY_POLICY.allowedCurves;
  const minBits = policy.minRsaBits ?? DEFAULT_KEY_POLICY.minRsaBits;
  const keys: { what: string; key: KeyObject }[] = [
    ...bundle.x509Authorities.map((a) => ({
      what: `X.509 authority sha256:${a.sha256.slice(0, 16)}`,
      key: a.certificate.publicKey,
    })),
    ...[...bundle.jwtAuthorities.values()].map((a) => ({
      what: `JWT authority "${a.kid}"`,
      key: a.publicKey,
    })),
  ];
  for (const { what, key } of keys) {
    const d = describePublicKey(key);
    if (d.kty === undefined) {
      return new PolicyError(
        'ERR_POLICY_KEY_TYPE',
        `${td}: ${what} has a ${d.nodeType} key, which cannot sign SVIDs`,
      );
    }
    if (!types.includes(d.kty)) {
      return new PolicyError(
        'ERR_POLICY_KEY_TYPE',
        `${td}: ${what} has key type ${d.kty}; allowed: ${types.join(', ')}`,
      );
    }
    if (d.curve !== undefined && !curves.includes(d.curve)) {
      return new PolicyError(
        'ERR_POLICY_KEY_TYPE',
        `${td}: ${what} uses curve ${d.curve}; allowed: ${curves.join(', ')}`,
      );
    }
    if (d.kty === 'RSA' && (d.bits === undefined || d.bits < minBits)) {
      return new PolicyError(
        'ERR_POLICY_RSA_TOO_SMALL',
        `${td}: ${what} is a ${d.bits ?? '?'}-bit RSA key; the minimum is ${minBits}`,
      );
    }
  }
  return undefined;
}
