import { parseBundleMap } from '../bundle/bundle-map.js';
import { parseBundle } from '../bundle/codec.js';
import { isJsonObject, parseJson } from '../bundle/json.js';
import { BundleSet, type BundleSource } from '../bundle/source.js';
import type { TrustBundle } from '../bundle/trust-bundle.js';
import { TrustDomain } from '../spiffeid/trust-domain.js';

/** A bundle file loaded for verification, and how its trust domain binding was decided. */
export interface LoadedBundles {
  readonly source: BundleSource;
  /**
   * `map`: a Bundle Map, each bundle bound to its named domain. `explicit`: one bundle bound to
   * `--trust-domain`. `assumed`: one bundle, no `--trust-domain`: bound to whichever trust domain
   * the SVID under test claims (the operator vouches for the file).
   */
  readonly binding: 'map' | 'explicit' | 'assumed';
}

/**
 * Loads a SPIFFE bundle or a Bundle Map from bytes.
 * @throws BundleError / SpiffeIdError on invalid content
 */
export function loadBundles(bytes: Uint8Array, trustDomain?: string): LoadedBundles {
  const doc = parseJson(bytes);
  if (isJsonObject(doc) && doc.trust_domains !== undefined && doc.keys === undefined) {
    return { source: new BundleSet(parseBundleMap(bytes).bundles.values()), binding: 'map' };
  }
  if (trustDomain !== undefined) {
    const td = TrustDomain.parse(trustDomain);
    return { source: new BundleSet([parseBundle(td, bytes).bundle]), binding: 'explicit' };
  }
  // Validate once up front so a bad file fails before any SVID is looked at.
  parseBundle(TrustDomain.parse('validation.invalid'), bytes);
  const cache = new Map<string, TrustBundle>();
  return {
    binding: 'assumed',
    source: {
      getBundleForTrustDomain(td) {
        let b = cache.get(td.name);
        if (!b) {
          b = parseBundle(td, bytes).bundle;
          cache.set(td.name, b);
        }
        return b;
      },
    },
  };
}
