import { createHash } from 'node:crypto';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { bundleFromWire } from './convert.js';
import type { WireBundle } from './wire.js';

/** Default bound of {@link WireBundleCache}: trust domains remembered. */
export const DEFAULT_WIRE_BUNDLE_CACHE_ENTRIES = 20_000;

/**
 * A digest of every wire field {@link bundleFromWire} reads (trust domain, refresh hint, sequence,
 * X.509 DER, JWT key IDs, keys and expiries; taint flags too), each length-prefixed so no two
 * different bundles share an input.
 */
export function wireBundleDigest(wire: WireBundle): string {
  const h = createHash('sha256');
  const str = (s: string): void => {
    h.update(`${Buffer.byteLength(s)}:`);
    h.update(s);
  };
  const bytes = (b: Uint8Array): void => {
    h.update(`${b.byteLength}:`);
    h.update(b);
  };
  str(wire.trust_domain);
  str(String(wire.refresh_hint));
  str(String(wire.sequence_number));
  const x509 = wire.x509_authorities ?? [];
  str(`x${x509.length}`);
  for (const a of x509) {
    bytes(a.asn1);
    str(a.tainted ? 't' : 'f');
  }
  const jwt = wire.jwt_authorities ?? [];
  str(`j${jwt.length}`);
  for (const k of jwt) {
    str(k.key_id);
    bytes(k.public_key);
    str(String(k.expires_at));
    str(k.tainted ? 't' : 'f');
  }
  return h.digest('base64');
}

/**
 * Remembers the last conversion of each trust domain's wire bundle, so reading an unchanged bundle
 * again — the SPIRE sync lists every federated bundle on each periodic resync, the endpoint polls
 * GetBundle four times a second — costs one SHA-256 instead of parsing every certificate and key.
 * Conversion is a pure function of the digested fields and {@link TrustBundle} is immutable, so a
 * hit returns the very bundle a fresh conversion would equal. Bounded (least recently used first
 * out); one entry per trust domain, replaced when its content changes.
 */
export class WireBundleCache {
  readonly maxEntries: number;
  readonly #byTrustDomain = new Map<string, { readonly digest: string; readonly bundle: TrustBundle }>();
  #hits = 0;
  #misses = 0;

  constructor(opts: { readonly maxEntries?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? DEFAULT_WIRE_BUNDLE_CACHE_ENTRIES;
    if (!Number.isSafeInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new TypeError(`WireBundleCache: maxEntries must be a positive integer, got ${this.maxEntries}`);
    }
  }

  /** {@link bundleFromWire}, answered from the cache when the content is unchanged. */
  convert(wire: WireBundle): TrustBundle {
    const digest = wireBundleDigest(wire);
    const key = wire.trust_domain;
    const hit = this.#byTrustDomain.get(key);
    if (hit && hit.digest === digest) {
      this.#hits++;
      this.#byTrustDomain.delete(key);
      this.#byTrustDomain.set(key, hit);
      return hit.bundle;
    }
    this.#misses++;
    const bundle = bundleFromWire(wire);
    this.#put(key, digest, bundle);
    return bundle;
  }

  /**
   * Records that `wire` is the wire form of `bundle` (`wire = bundleToWire(bundle)`), e.g. after
   * SPIRE accepted it in a BatchSet: reading it back then returns `bundle` itself, so the cache
   * holds the caller's objects rather than copies.
   */
  remember(wire: WireBundle, bundle: TrustBundle): void {
    if (wire.trust_domain !== bundle.trustDomain.name) {
      throw new TypeError(
        'WireBundleCache.remember: the wire bundle and the bundle name different trust domains',
      );
    }
    this.#put(wire.trust_domain, wireBundleDigest(wire), bundle);
  }

  #put(key: string, digest: string, bundle: TrustBundle): void {
    this.#byTrustDomain.delete(key);
    this.#byTrustDomain.set(key, { digest, bundle });
    if (this.#byTrustDomain.size > this.maxEntries) {
      const oldest = this.#byTrustDomain.keys().next().value;
      if (oldest !== undefined) this.#byTrustDomain.delete(oldest);
    }
  }

  /** Entries held, hits and misses so far (tests, metrics). */
  stats(): { readonly size: number; readonly hits: number; readonly misses: number } {
    return { size: this.#byTrustDomain.size, hits: this.#hits, misses: this.#misses };
  }
}
