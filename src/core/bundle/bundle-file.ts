import { pemToDerList } from '../../adapters/pki/pem.js';
import { BundleError } from '../../errors.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import { type ParsedBundleMap, parseBundleMap } from './bundle-map.js';
import { type BundleParseOptions, type IgnoredEntry, parseBundle } from './codec.js';
import { isJsonObject, parseJson } from './json.js';
import { TrustBundle } from './trust-bundle.js';

/**
 * The forms a trust bundle file comes in, as operators have them:
 * - `spiffe-bundle`: a SPIFFE bundle document, a JWK Set (SPIFFE Trust Domain and Bundle §4;
 *   `spire-server bundle show -format spiffe`);
 * - `bundle-map`: a SPIFFE Bundle Map, `{"trust_domains": {...}}` (SPIFFE Federation §4.2; the
 *   broker's `/v1/bundles`);
 * - `pem`: PEM CA certificates (`spire-server bundle show`'s default output, the `bundle.pem`
 *   `spire-server x509 mint` writes). X.509 authorities only: PEM carries no JWT authorities, no
 *   sequence and no refresh hint.
 */
export type BundleFileFormat = 'spiffe-bundle' | 'bundle-map' | 'pem';

/** One trust domain's bundle read from a file in any {@link BundleFileFormat}. */
export interface ParsedBundleFile {
  readonly format: BundleFileFormat;
  readonly bundle: TrustBundle;
  /** JWK entries ignored per the spec (empty for PEM). */
  readonly ignored: readonly IgnoredEntry[];
}

const decoder = new TextDecoder('utf-8');

/**
 * Which {@link BundleFileFormat} `bytes` hold: PEM when the first non-blank text is a PEM
 * boundary; a Bundle Map when the JSON object has `trust_domains` and no `keys`; otherwise a SPIFFE
 * bundle (whose parser then says precisely what is wrong, including for text that is not JSON).
 * The one place the CLI and the configuration checks tell the formats apart.
 */
export function detectBundleFormat(bytes: Uint8Array | string): BundleFileFormat {
  const text = typeof bytes === 'string' ? bytes : decoder.decode(bytes);
  if (
    text
      .replace(/^\uFEFF/, '')
      .trimStart()
      .startsWith('-----BEGIN ')
  )
    return 'pem';
  let doc: ReturnType<typeof parseJson>;
  try {
    doc = parseJson(bytes);
  } catch {
    return 'spiffe-bundle';
  }
  return isJsonObject(doc) && doc.trust_domains !== undefined && doc.keys === undefined
    ? 'bundle-map'
    : 'spiffe-bundle';
}

/**
 * Builds a bundle of `trustDomain` from PEM CA certificates: X.509 authorities only, sequence and
 * refresh hint unset.
 * @throws BundleError `ERR_BUNDLE_PEM_INVALID` (no CERTIFICATE block, a block that does not decode)
 *   or the certificate errors of {@link TrustBundle.create}.
 */
export function bundleFromPem(trustDomain: TrustDomain, bytes: Uint8Array | string): TrustBundle {
  const text = typeof bytes === 'string' ? bytes : decoder.decode(bytes);
  return TrustBundle.create({ trustDomain, x509Authorities: pemToDerList(text, 'CERTIFICATE') });
}

/**
 * Reads `trustDomain`'s bundle from a file in any {@link BundleFileFormat}: a SPIFFE bundle or PEM
 * is bound to `trustDomain` (neither names its trust domain, §4); a Bundle Map must hold an entry
 * for it.
 *
 * @example
 * const { format, bundle } = parseBundleFile(TrustDomain.parse('example.org'), await readFile('bundle.pem'));
 * @throws BundleError as the format's parser does; `ERR_BUNDLE_MAP_INVALID` when a Bundle Map has
 *   no entry for `trustDomain`.
 */
export function parseBundleFile(
  trustDomain: TrustDomain,
  bytes: Uint8Array | string,
  opts: BundleParseOptions = {},
): ParsedBundleFile {
  const format = detectBundleFormat(bytes);
  if (format === 'pem') return { format, bundle: bundleFromPem(trustDomain, bytes), ignored: [] };
  if (format === 'spiffe-bundle') return { format, ...parseBundle(trustDomain, bytes, opts) };
  const map = parseBundleMap(bytes, opts);
  return { format, ...bundleMapEntry(map, trustDomain) };
}

/**
 * The entry of `trustDomain` in a parsed Bundle Map.
 * @throws BundleError `ERR_BUNDLE_MAP_INVALID` when the map has none, naming those it has.
 */
export function bundleMapEntry(
  map: ParsedBundleMap,
  trustDomain: TrustDomain,
): { bundle: TrustBundle; ignored: readonly IgnoredEntry[] } {
  const bundle = map.bundles.get(trustDomain.name);
  if (!bundle) {
    const held = [...map.bundles.keys()];
    throw new BundleError(
      'ERR_BUNDLE_MAP_INVALID',
      `the Bundle Map has no bundle for ${trustDomain.name} (it holds ${held.length === 0 ? 'none' : held.join(', ')})`,
    );
  }
  return { bundle, ignored: map.ignored.get(trustDomain.name) ?? [] };
}
