import type { SpireServerClient } from '../../adapters/spire/client.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { BatchItemResult, DeleteMode, SpireFederationApi } from './spire-sync.js';

/** An output mask selecting no bundle field: SPIRE then answers each item's trust domain only. */
const NO_BUNDLE_FIELDS = Object.freeze({});

const MODES = { restrict: 'RESTRICT', dissociate: 'DISSOCIATE', delete: 'DELETE' } as const;

/** Adapts the typed SPIRE client to the slice of the API a {@link SpireServerSync} needs. */
export function spireFederationApi(client: SpireServerClient): SpireFederationApi {
  return {
    listFederatedBundles: (signal) => client.listFederatedBundles(signal ? { signal } : {}),
    listFederatedBundleSequences: (signal) => client.listFederatedBundleSequences(signal ? { signal } : {}),
    async listFederationRelationships(signal) {
      const rels = await client.listFederationRelationships(signal ? { signal } : {});
      return rels.map((r) => r.trustDomain.name);
    },
    async batchSetFederatedBundle(
      bundles: readonly TrustBundle[],
      signal?: AbortSignal,
    ): Promise<BatchItemResult[]> {
      // Only each item's status is used: an output mask asking for no bundle field spares SPIRE
      // encoding, and the broker decoding, every stored bundle back (~3 MiB per full BatchSet).
      const results = await client.batchSetFederatedBundle(bundles, {
        fields: NO_BUNDLE_FIELDS,
        ...(signal ? { signal } : {}),
      });
      return results.map((r) => ({
        trustDomain: r.trustDomain,
        ok: r.ok,
        code: r.status.code,
        message: r.status.message,
      }));
    },
    async batchDeleteFederatedBundle(
      trustDomains: readonly string[],
      mode: DeleteMode,
      signal?: AbortSignal,
    ) {
      const results = await client.batchDeleteFederatedBundle(trustDomains, {
        mode: MODES[mode],
        ...(signal ? { signal } : {}),
      });
      return results.map((r) => ({
        trustDomain: r.trustDomain,
        ok: r.ok,
        code: r.status.code,
        message: r.status.message,
      }));
    },
  };
}
