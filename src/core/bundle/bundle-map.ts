import { BundleError } from '../../errors.js';
import { TrustDomain } from '../spiffeid/trust-domain.js';
import {
  type BundleParseOptions,
  bundleFromJson,
  codedParseFailure,
  type IgnoredEntry,
  marshalBundle,
} from './codec.js';
import { isJsonObject, jsonTypeName, parseJson } from './json.js';
import type { TrustBundle } from './trust-bundle.js';

/**
 * Largest bundle, in bytes as a Bundle Map serves it, that the broker accepts from one peer by
 * default (policy `maxBundleBytes`). SPIRE's bundles are a few KiB; 64 KiB holds some twenty RSA-4096
 * X.509 authorities or hundreds of EC keys.
 */
export const DEFAULT_PEER_BUNDLE_BYTES = 64 * 1024;

/**
 * The number of trust domains the documented maximum Bundle Map holds, each at
 * {@link DEFAULT_PEER_BUNDLE_BYTES}: the map consumers' default limit is sized for it, so no single
 * peer — and no set of up to this many peers at their default cap — can make a broker's
 * `/v1/bundles` too large for its consumers.
 */
export const MAX_BUNDLE_MAP_TRUST_DOMAINS = 1024;

/** Per-entry framing in a Bundle Map beyond the bundle itself: a quoted trust domain name (≤ 255), `:` and `,`. */
const MAP_ENTRY_OVERHEAD_BYTES = 260;

/**
 * Default size limit of a parsed Bundle Map ({@link parseBundleMap}, `PolledBundleMapSource`):
 * the documented maximum map, {@link MAX_BUNDLE_MAP_TRUST_DOMAINS} bundles of
 * {@link DEFAULT_PEER_BUNDLE_BYTES} each plus framing — about 64.3 MiB. Real maps are far smaller
 * (1,000 SPIRE peers ≈ 5 MiB); this bound only stops a runaway document.
 */
export const DEFAULT_MAX_BUNDLE_MAP_BYTES =
  MAX_BUNDLE_MAP_TRUST_DOMAINS * (DEFAULT_PEER_BUNDLE_BYTES + MAP_ENTRY_OVERHEAD_BYTES) + 64;

/** A parsed Bundle Map: one bundle per trust domain, never merged (SPIFFE Federation §4.2). */
export interface ParsedBundleMap {
  /** By trust domain name, in document order. */
  readonly bundles: ReadonlyMap<string, TrustBundle>;
  /** Ignored JWK entries per trust domain name (only domains that had some). */
  readonly ignored: ReadonlyMap<string, readonly IgnoredEntry[]>;
}

/**
 * Parses a SPIFFE Bundle Map: `{"trust_domains": {"<name>": <SPIFFE bundle>, ...}}`.
 *
 * The `trust_domains` member MUST be present (it may be empty). Member names are trust domain names
 * (a `spiffe://` form is accepted and normalised); a trust domain that appears twice — literally
 * or after normalisation — is refused, as the spec asks consumers to do where they can detect it.
 * Per-bundle refresh hints are kept on the bundles but callers must not let them drive map
 * refreshes. The size cap (`maxBytes`, default {@link DEFAULT_MAX_BUNDLE_MAP_BYTES}) applies to
 * the whole document; the key cap to each bundle.
 * @throws BundleError
 */
export function parseBundleMap(bytes: Uint8Array | string, opts: BundleParseOptions = {}): ParsedBundleMap {
  try {
    return parseMap(bytes, opts);
  } catch (err) {
    throw codedParseFailure(err, 'bundle map');
  }
}

function parseMap(bytes: Uint8Array | string, opts: BundleParseOptions): ParsedBundleMap {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BUNDLE_MAP_BYTES;
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength;
  if (size > maxBytes) {
    throw new BundleError('ERR_BUNDLE_TOO_LARGE', `bundle map is ${size} bytes; the limit is ${maxBytes}`);
  }
  let doc: ReturnType<typeof parseJson>;
  try {
    doc = parseJson(bytes);
  } catch (err) {
    if (err instanceof BundleError && err.code === 'ERR_BUNDLE_JSON_DUPLICATE_MEMBER') {
      throw new BundleError('ERR_BUNDLE_MAP_DUPLICATE_TRUST_DOMAIN', `bundle map: ${err.message}`, {
        cause: err,
      });
    }
    throw err;
  }
  if (!isJsonObject(doc)) {
    throw new BundleError(
      'ERR_BUNDLE_MAP_INVALID',
      `bundle map must be a JSON object, got ${jsonTypeName(doc)}`,
    );
  }
  const tds = doc.trust_domains;
  if (!isJsonObject(tds)) {
    throw new BundleError(
      'ERR_BUNDLE_MAP_INVALID',
      `bundle map: "trust_domains" must be an object, got ${jsonTypeName(tds)}`,
    );
  }
  const bundles = new Map<string, TrustBundle>();
  const ignored = new Map<string, IgnoredEntry[]>();
  for (const name of Object.keys(tds)) {
    let td: TrustDomain;
    try {
      td = TrustDomain.parseNameOrId(name);
    } catch (cause) {
      throw new BundleError(
        'ERR_BUNDLE_MAP_INVALID',
        `bundle map: ${JSON.stringify(name)} is not a trust domain`,
        {
          cause,
        },
      );
    }
    if (bundles.has(td.name)) {
      throw new BundleError(
        'ERR_BUNDLE_MAP_DUPLICATE_TRUST_DOMAIN',
        `bundle map: trust domain "${td.name}" appears more than once`,
      );
    }
    let parsed: ReturnType<typeof bundleFromJson>;
    try {
      parsed = bundleFromJson(td, tds[name]!, opts, `bundle of "${td.name}"`);
    } catch (err) {
      if (err instanceof BundleError) {
        throw new BundleError(err.code, `bundle map, trust domain "${td.name}": ${err.message}`, {
          cause: err,
        });
      }
      throw err;
    }
    bundles.set(td.name, parsed.bundle);
    if (parsed.ignored.length > 0) ignored.set(td.name, [...parsed.ignored]);
  }
  return { bundles, ignored };
}

/**
 * Serialises bundles as a Bundle Map, sorted by trust domain name. Per-bundle refresh hints are
 * omitted as the spec recommends for producers; sequences are kept.
 */
export function marshalBundleMap(bundles: Iterable<TrustBundle>): string {
  const sorted = [...bundles].sort((a, b) => (a.trustDomain.name < b.trustDomain.name ? -1 : 1));
  const seen = new Set<string>();
  const parts: string[] = [];
  for (const b of sorted) {
    if (seen.has(b.trustDomain.name)) {
      throw new TypeError(`marshalBundleMap: trust domain "${b.trustDomain.name}" given twice`);
    }
    seen.add(b.trustDomain.name);
    parts.push(`${JSON.stringify(b.trustDomain.name)}:${marshalBundle(b, { refreshHint: 0 })}`);
  }
  return `{"trust_domains":{${parts.join(',')}}}`;
}
