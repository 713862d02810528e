import { type BundleFileFormat, detectBundleFormat, parseBundleFile } from '../core/bundle/bundle-file.js';
import { parseBundleMap } from '../core/bundle/bundle-map.js';
import { BundleSet, type BundleSource } from '../core/bundle/source.js';
import type { TrustBundle } from '../core/bundle/trust-bundle.js';
import { TrustDomain } from '../core/spiffeid/trust-domain.js';

/** A bundle file loaded for verification, and how its trust domain binding was decided. */
export interface LoadedBundles {
  readonly source: BundleSource;
  /**
   * `map`: a Bundle Map, each bundle bound to its named domain. `explicit`: one bundle bound to
   * `--trust-domain`. `assumed`: one bundle, no `--trust-domain`: bound to whichever trust domain
   * the SVID under test claims (the operator vouches for the file).
   */
  readonly binding: 'map' | 'explicit' | 'assumed';
  /** The file's form; `pem` holds X.509 authorities only. */
  readonly format: BundleFileFormat;
}

/** What the CLI says about a PEM bundle file wherever it reads one. */
export const PEM_BUNDLE_NOTE =
  'PEM: X.509 authorities only (a PEM file carries no JWT authorities, sequence or refresh hint)';

/**
 * Loads a SPIFFE bundle, a Bundle Map or PEM CA certificates (what `spire-server bundle show`
 * prints by default) from bytes; the format is told apart by {@link detectBundleFormat}, the one
 * sniffing function every CLI command shares.
 * @throws BundleError / SpiffeIdError on invalid content
 */
export function loadBundles(bytes: Uint8Array, trustDomain?: string): LoadedBundles {
  const format = detectBundleFormat(bytes);
  if (format === 'bundle-map') {
    return { source: new BundleSet(parseBundleMap(bytes).bundles.values()), binding: 'map', format };
  }
  if (trustDomain !== undefined) {
    const td = TrustDomain.parse(trustDomain);
    return { source: new BundleSet([parseBundleFile(td, bytes).bundle]), binding: 'explicit', format };
  }
  // Validate once up front so a bad file fails before any SVID is looked at.
  parseBundleFile(TrustDomain.parse('validation.invalid'), bytes);
  const cache = new Map<string, TrustBundle>();
  return {
    binding: 'assumed',
    format,
    source: {
      getBundleForTrustDomain(td) {
        let b = cache.get(td.name);
        if (!b) {
          b = parseBundleFile(td, bytes).bundle;
          cache.set(td.name, b);
        }
        return b;
      },
    },
  };
}
