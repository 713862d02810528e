import type { TrustDomain } from '../spiffeid/trust-domain.js';
import type { TrustBundle } from './trust-bundle.js';

/**
 * The one capability verification needs: the current bundle of a trust domain, or `undefined`
 * when none is held. A single bundle, a {@link BundleSet}, a file, or the live broker all
 * implement it, so verification code never knows which.
 */
export interface BundleSource {
  getBundleForTrustDomain(trustDomain: TrustDomain): TrustBundle | undefined;
}

/**
 * A mutable set of bundles keyed by trust domain (never merged: one bundle per domain,
 * SPIFFE Federation §4.2). Implements {@link BundleSource}.
 */
export class BundleSet implements BundleSource {
  readonly #bundles = new Map<string, TrustBundle>();

  constructor(bundles: Iterable<TrustBundle> = []) {
    for (const b of bundles) this.set(b);
  }

  /** Adds or replaces the bundle of `bundle.trustDomain`. */
  set(bundle: TrustBundle): void {
    this.#bundles.set(bundle.trustDomain.name, bundle);
  }

  delete(trustDomain: TrustDomain): boolean {
    return this.#bundles.delete(trustDomain.name);
  }

  getBundleForTrustDomain(trustDomain: TrustDomain): TrustBundle | undefined {
    return this.#bundles.get(trustDomain.name);
  }

  /** Bundles sorted by trust domain name. */
  bundles(): TrustBundle[] {
    return [...this.#bundles.values()].sort((a, b) =>
      a.trustDomain.name < b.trustDomain.name ? -1 : a.trustDomain.name > b.trustDomain.name ? 1 : 0,
    );
  }

  get size(): number {
    return this.#bundles.size;
  }
}
