import type { TrustBundle } from '../../src/core/bundle/trust-bundle.js';
import type { BatchItemResult, DeleteMode, SpireFederationApi } from '../../src/engine/publish/spire-sync.js';
import { SpireError } from '../../src/errors.js';

/**
 * An in-memory SPIRE federation API with failure injection, for unit tests of the reconciler.
 * (The SPIRE emulator and real spire-server are exercised by the integration suites.)
 */
export class FakeSpireApi implements SpireFederationApi {
  readonly bundles = new Map<string, TrustBundle>();
  readonly relationships = new Set<string>();
  /** Trust domains that registration entries federate with: restrict-mode deletes fail. */
  readonly federatedByEntries = new Set<string>();
  /** Trust domains whose next Set item fails. */
  readonly failNextSet = new Set<string>();
  down = false;
  readonly calls: { method: string; trustDomains: string[]; mode?: DeleteMode }[] = [];

  #check(): void {
    if (this.down) throw new SpireError('ERR_SPIRE_UNAVAILABLE', 'connection refused');
  }

  async listFederatedBundles(): Promise<TrustBundle[]> {
    this.#check();
    this.calls.push({ method: 'list', trustDomains: [] });
    return [...this.bundles.values()];
  }

  async listFederationRelationships(): Promise<string[]> {
    this.#check();
    return [...this.relationships];
  }

  async batchSetFederatedBundle(bundles: readonly TrustBundle[]): Promise<BatchItemResult[]> {
    this.#check();
    this.calls.push({ method: 'set', trustDomains: bundles.map((b) => b.trustDomain.name) });
    return bundles.map((b) => {
      const td = b.trustDomain.name;
      if (this.failNextSet.delete(td))
        return { trustDomain: td, ok: false, code: 13, message: 'failed to set bundle: injected' };
      this.bundles.set(td, b);
      return { trustDomain: td, ok: true, code: 0, message: 'OK' };
    });
  }

  async batchDeleteFederatedBundle(
    trustDomains: readonly string[],
    mode: DeleteMode,
  ): Promise<BatchItemResult[]> {
    this.#check();
    this.calls.push({ method: 'delete', trustDomains: [...trustDomains], mode });
    return trustDomains.map((td) => {
      if (!this.bundles.has(td)) return { trustDomain: td, ok: false, code: 5, message: 'bundle not found' };
      if (mode === 'restrict' && this.federatedByEntries.has(td)) {
        return {
          trustDomain: td,
          ok: false,
          code: 9,
          message:
            'failed to delete federated bundle: datastore-sql: cannot delete bundle; federated with 1 registration entries',
        };
      }
      this.bundles.delete(td);
      return { trustDomain: td, ok: true, code: 0, message: 'OK' };
    });
  }

  count(method: string): number {
    return this.calls.filter((c) => c.method === method).length;
  }
}
