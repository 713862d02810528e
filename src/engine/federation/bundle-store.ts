import type { BundleSource } from '../../core/bundle/source.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';

/** A change to the set of federated bundles the broker holds. */
export type BundleStoreChange =
  | {
      readonly kind: 'set';
      readonly trustDomain: string;
      readonly bundle: TrustBundle;
      readonly previous?: TrustBundle;
    }
  | { readonly kind: 'delete'; readonly trustDomain: string; readonly previous: TrustBundle };

/**
 * The federated bundles the broker currently holds (each peer's last-known-good), keyed by trust
 * domain and never merged (SPIFFE Federation §4.2). It is the live {@link BundleSource} behind the
 * verify API and the Node TLS helper, and the desired state the SPIRE reconcilers converge to.
 * Listeners are called synchronously after each change.
 */
export class FederatedBundleStore implements BundleSource {
  readonly #bundles = new Map<string, TrustBundle>();
  readonly #listeners = new Set<(change: BundleStoreChange) => void>();
  #version = 0;

  getBundleForTrustDomain(trustDomain: TrustDomain): TrustBundle | undefined {
    return this.#bundles.get(trustDomain.name);
  }

  get(trustDomain: string): TrustBundle | undefined {
    return this.#bundles.get(trustDomain);
  }

  /** Bundles sorted by trust domain name. */
  bundles(): TrustBundle[] {
    return [...this.#bundles.values()].sort((a, b) => (a.trustDomain.name < b.trustDomain.name ? -1 : 1));
  }

  /** Increases on every change; lets pollers detect changes cheaply. */
  get version(): number {
    return this.#version;
  }

  set(bundle: TrustBundle): void {
    const td = bundle.trustDomain.name;
    const previous = this.#bundles.get(td);
    this.#bundles.set(td, bundle);
    this.#version++;
    this.#emit(
      previous
        ? { kind: 'set', trustDomain: td, bundle, previous }
        : { kind: 'set', trustDomain: td, bundle },
    );
  }

  delete(trustDomain: string): boolean {
    const previous = this.#bundles.get(trustDomain);
    if (!previous) return false;
    this.#bundles.delete(trustDomain);
    this.#version++;
    this.#emit({ kind: 'delete', trustDomain, previous });
    return true;
  }

  /** Subscribes to changes; returns the unsubscribe function. */
  subscribe(listener: (change: BundleStoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(change: BundleStoreChange): void {
    for (const l of this.#listeners) l(change);
  }
}
