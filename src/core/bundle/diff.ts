import type { TrustBundle } from './trust-bundle.js';

/** What changed between two bundles of one trust domain. */
export interface BundleDiff {
  /** SHA-256 fingerprints (hex) of X.509 authorities only in the new bundle. */
  readonly x509Added: readonly string[];
  /** SHA-256 fingerprints (hex) of X.509 authorities only in the old bundle. */
  readonly x509Removed: readonly string[];
  /** JWT authority key IDs only in the new bundle. */
  readonly jwtAdded: readonly string[];
  /** JWT authority key IDs only in the old bundle. */
  readonly jwtRemoved: readonly string[];
  /** Key IDs present in both whose public key changed. */
  readonly jwtChanged: readonly string[];
  readonly refreshHintChanged: boolean;
  readonly sequenceChanged: boolean;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Compares two bundles (the trust domains must match). `before` may be undefined (everything added). */
export function diffBundles(before: TrustBundle | undefined, after: TrustBundle): BundleDiff {
  if (before && !before.trustDomain.equals(after.trustDomain)) {
    throw new TypeError(
      `diffBundles: trust domains differ (${before.trustDomain.name} vs ${after.trustDomain.name})`,
    );
  }
  const oldX = new Set(before?.x509Authorities.map((a) => a.sha256));
  const newX = new Set(after.x509Authorities.map((a) => a.sha256));
  const oldJ = before?.jwtAuthorities ?? new Map();
  const newJ = after.jwtAuthorities;
  return {
    x509Added: [...newX].filter((f) => !oldX.has(f)),
    x509Removed: [...oldX].filter((f) => !newX.has(f)),
    jwtAdded: [...newJ.keys()].filter((k) => !oldJ.has(k)),
    jwtRemoved: [...oldJ.keys()].filter((k) => !newJ.has(k)),
    jwtChanged: [...newJ.keys()].filter((k) => {
      const o = oldJ.get(k);
      return o !== undefined && !sameBytes(o.spki, newJ.get(k)!.spki);
    }),
    refreshHintChanged: (before?.refreshHint ?? 0) !== after.refreshHint,
    sequenceChanged: (before?.sequence ?? 0n) !== after.sequence,
  };
}

/** True when the diff shows no change in authorities (hint and sequence are not considered). */
export function authoritiesUnchanged(d: BundleDiff): boolean {
  return (
    d.x509Added.length === 0 &&
    d.x509Removed.length === 0 &&
    d.jwtAdded.length === 0 &&
    d.jwtRemoved.length === 0 &&
    d.jwtChanged.length === 0
  );
}

/** What {@link bundlesEqual} compares besides the trust domain and the authority sets. */
export interface EqualityOptions {
  /** Compare `sequence` too (default true). */
  readonly sequence?: boolean;
  /** Compare `refreshHint` too (default true). */
  readonly refreshHint?: boolean;
  /** Compare JWT `expiresAt` too (default false: SPIFFE bundle JSON does not carry it). */
  readonly jwtExpiry?: boolean;
}

/**
 * Content equality: same trust domain, same X.509 authorities (as a set, by DER), same JWT
 * authorities (kid → key), and by default the same refresh hint and sequence. Authority order
 * is not significant.
 */
export function bundlesEqual(a: TrustBundle, b: TrustBundle, opts: EqualityOptions = {}): boolean {
  if (!a.trustDomain.equals(b.trustDomain)) return false;
  if ((opts.sequence ?? true) && a.sequence !== b.sequence) return false;
  if ((opts.refreshHint ?? true) && a.refreshHint !== b.refreshHint) return false;
  if (
    a.x509Authorities.length !== b.x509Authorities.length ||
    a.jwtAuthorities.size !== b.jwtAuthorities.size
  ) {
    return false;
  }
  const bx = new Set(b.x509Authorities.map((x) => x.sha256));
  if (!a.x509Authorities.every((x) => bx.has(x.sha256))) return false;
  for (const [kid, ka] of a.jwtAuthorities) {
    const kb = b.jwtAuthorities.get(kid);
    if (!kb || !sameBytes(ka.spki, kb.spki)) return false;
    if (opts.jwtExpiry && ka.expiresAt !== kb.expiresAt) return false;
  }
  return true;
}
