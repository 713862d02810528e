import { createHash } from 'node:crypto';
import type { BundleSource } from '../bundle/source.js';
import type { TrustBundle, X509Authority } from '../bundle/trust-bundle.js';
import type { SpiffeId } from '../spiffeid/spiffe-id.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import { type AnchorInfo, computeAnchorInfo } from './anchor.js';

/** Default {@link X509VerifyCacheOptions.maxEntries}: enough for every peer of a busy service. */
export const DEFAULT_X509_CACHE_ENTRIES = 10_000;

/** Options of {@link X509VerifyCache}. */
export interface X509VerifyCacheOptions {
  /** Most verified chains kept; the least recently used is dropped beyond it. Default 10 000. */
  readonly maxEntries?: number;
}

/** A chain that verified, and what its verification depended on. @internal */
export interface CachedVerification {
  readonly id: SpiffeId;
  readonly trustDomain: TrustDomain;
  /** The exact bundle object the chain was verified against. */
  readonly bundle: TrustBundle;
  /** That bundle's sequence at the time (guards sources that mutate in place). */
  readonly sequence: bigint;
  /** Latest notBefore on the verified path, ms: before it the chain is not yet valid. */
  readonly validFrom: number;
  /** Earliest notAfter on the verified path (leaf, intermediates, authority), ms. */
  readonly validUntil: number;
}

/** Hit and miss counts of an {@link X509VerifyCache}. */
export interface X509VerifyCacheStats {
  readonly size: number;
  readonly hits: number;
  readonly misses: number;
}

/**
 * Remembers X509-SVID chains that verified, so presenting the same chain again costs a SHA-256 of
 * its DER and a map lookup instead of parsing and signature checks.
 *
 * An entry is used only while (1) the source still returns the **same bundle object** for the
 * leaf's trust domain with the same sequence — a rotated, revoked or removed bundle invalidates it
 * — and (2) the injected `now` lies within every certificate's validity on the verified path.
 * Failures are never cached. Authorization (`opts.authorize`) is applied on every call, so one cache
 * can serve callers with different policies. Bounded: least-recently-used entries are dropped
 * beyond `maxEntries`. Not shared between processes; holds no timers.
 *
 * @example
 * const cache = new X509VerifyCache({ maxEntries: 1000 });
 * verifyX509Svid(chain, bundles, { now: clock.now(), cache });
 */
export class X509VerifyCache {
  readonly #max: number;
  readonly #entries = new Map<string, CachedVerification>();
  readonly #anchors = new WeakMap<X509Authority, AnchorInfo>();
  #hits = 0;
  #misses = 0;

  constructor(opts: X509VerifyCacheOptions = {}) {
    const max = opts.maxEntries ?? DEFAULT_X509_CACHE_ENTRIES;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new TypeError(`X509VerifyCache: maxEntries must be a positive integer, got ${max}`);
    }
    this.#max = max;
  }

  /** The cache key of a chain: base64 SHA-256 over the certificates' DER, in order. @internal */
  static keyOf(ders: readonly Uint8Array[]): string {
    // DER certificates are self-delimiting, so the concatenation is unambiguous.
    const h = createHash('sha256');
    for (const d of ders) h.update(d);
    return h.digest('base64');
  }

  /**
   * The cached verification for `key` if it still holds for `source` at `now`, else undefined
   * (and a stale entry is dropped). @internal
   */
  get(key: string, source: BundleSource, now: number): CachedVerification | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) {
      this.#misses++;
      return undefined;
    }
    const bundle = source.getBundleForTrustDomain(entry.trustDomain);
    if (bundle !== entry.bundle || bundle.sequence !== entry.sequence || now > entry.validUntil) {
      this.#entries.delete(key);
      this.#misses++;
      return undefined;
    }
    if (now < entry.validFrom) {
      this.#misses++;
      return undefined;
    }
    // Refresh recency: a Map iterates in insertion order, so the first key is the least recent.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    this.#hits++;
    return entry;
  }

  /** Stores a successful verification. @internal */
  set(key: string, entry: CachedVerification): void {
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    if (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
  }

  /**
   * Authority-derived data (raw names, validity, key usage, public key), computed once per
   * authority object; authorities are immutable, so this never goes stale. @internal
   */
  anchor(authority: X509Authority): AnchorInfo {
    let info = this.#anchors.get(authority);
    if (info === undefined) {
      info = computeAnchorInfo(authority);
      this.#anchors.set(authority, info);
    }
    return info;
  }

  /** Drops every entry (counters are kept). */
  clear(): void {
    this.#entries.clear();
  }

  /** Number of cached chains. */
  get size(): number {
    return this.#entries.size;
  }

  /** Entries, hits and misses since construction. */
  stats(): X509VerifyCacheStats {
    return { size: this.#entries.size, hits: this.#hits, misses: this.#misses };
  }
}
