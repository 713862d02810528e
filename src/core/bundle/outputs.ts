import { toPem } from '../../adapters/pki/pem.js';
import { OutputError } from '../../errors.js';
import { marshalBundle } from './codec.js';
import { renderJwks } from './oidc.js';
import { TrustBundle, type X509Authority } from './trust-bundle.js';

/**
 * Renderers of the hub outputs: the accepted (last-known-good) bundles, in the format each
 * consumer reads. Pure: bundles in, text out; the same bundles always give the same bytes
 * (trust domains sorted, authorities sorted), so a writer can skip a write when nothing changed.
 *
 * | format | what | per trust domain |
 * | --- | --- | --- |
 * | `grpc-bundle-map` | SPIFFE Bundle Map of X.509 authorities for proxyless gRPC (gRFC A87 `spiffe_trust_bundle_map_file`) | no |
 * | `envoy-bundle-map` | the same document for Envoy's `SPIFFECertValidatorConfig.trust_bundles` (Envoy ≥ 1.34) | no |
 * | `bundle-map` | the full SPIFFE Bundle Map, byte for byte as the admin API's `/v1/bundles` serves it | no |
 * | `bundle` | one trust domain's SPIFFE bundle (X.509 and JWT authorities, sequence, refresh hint) | yes |
 * | `pem` | one trust domain's X.509 authorities as PEM | yes |
 * | `jwks` | one trust domain's JWT authorities as an RFC 7517 JWK Set (`use` = `sig`) | yes |
 *
 * Why the two consumer maps are stricter than the SPIFFE Bundle Map (each parser refuses the
 * **whole** map for one entry it does not take, so one odd peer would cut every peer off):
 * - grpc-go (`internal/credentials/spiffe.BundleMapFromBytes`, v1.85) parses each bundle with
 *   go-spiffe's `spiffebundle.Parse`, whose JWK decoding (go-jose v4) refuses a `kty` other than
 *   `RSA`, `EC` (curves P-256, P-384, P-521 only), `OKP`/Ed25519 or `oct`, an `x5c` whose key
 *   differs from the JWK members, and an `x509-svid` entry without exactly one `x5c`; a `jwt-svid`
 *   entry without `kid` is refused too.
 * - Envoy (`spiffe_validator.cc` `parseTrustBundles`) refuses an entry whose `use` is not
 *   `x509-svid` (so any JWT authority), one without `x5c`, a trust domain with no keys at all, and
 *   a map whose `trust_domains` is empty.
 *
 * So both maps carry X.509 authorities only, as `{"use":"x509-svid","kty":…,<key members>,"x5c":[one]}`
 * without `kid` (X509-SVID §6.1: it is not used), and only authorities whose key is RSA or EC on
 * P-256/P-384/P-521 (Ed25519 would pass grpc-go but is not what SPIRE issues; anything else would
 * fail grpc-go). A trust domain left with no authority is omitted from the map (and reported in
 * {@link X509BundleMap.omitted}) rather than written as an empty bundle. The two documents are the
 * same bytes: the consumers differ only in that Envoy refuses a map with no trust domain at all
 * ({@link X509BundleMap.trustDomains} is then empty — include the local trust domain, which always
 * has an X.509 authority, to avoid it).
 * @module
 */

/** Every output format the renderers produce. */
export const OUTPUT_FORMATS = [
  'grpc-bundle-map',
  'envoy-bundle-map',
  'bundle-map',
  'bundle',
  'pem',
  'jwks',
] as const;

/** One of {@link OUTPUT_FORMATS}. */
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The formats that describe one trust domain (one file, or one export, per trust domain). */
export const PER_TRUST_DOMAIN_FORMATS: ReadonlySet<OutputFormat> = new Set(['bundle', 'pem', 'jwks']);

/** True when `value` names an {@link OutputFormat}. */
export function isOutputFormat(value: string): value is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(value);
}

/** A trust domain (or one of its authorities) left out of a consumer map, and why. */
export interface OmittedEntry {
  readonly trustDomain: string;
  /** Hex SHA-256 of the authority's DER; absent when the whole trust domain was left out. */
  readonly authority?: string;
  readonly reason: string;
}

/** A rendered consumer Bundle Map ({@link renderX509BundleMap}). */
export interface X509BundleMap {
  /** The document, compact JSON without a trailing newline. */
  readonly text: string;
  /** Trust domains in the map, sorted. */
  readonly trustDomains: readonly string[];
  /** What was left out, in trust domain order. */
  readonly omitted: readonly OmittedEntry[];
}

/** EC curves every consumer parser takes, as node:crypto names them (go-jose v4 `ecPublicKey`). */
const CONSUMER_EC_CURVES: ReadonlyMap<string, string> = new Map([
  ['prime256v1', 'P-256'],
  ['secp384r1', 'P-384'],
  ['secp521r1', 'P-521'],
]);

function byName(a: TrustBundle, b: TrustBundle): number {
  return a.trustDomain.name < b.trustDomain.name ? -1 : a.trustDomain.name > b.trustDomain.name ? 1 : 0;
}

function bySha(a: X509Authority, b: X509Authority): number {
  return a.sha256 < b.sha256 ? -1 : a.sha256 > b.sha256 ? 1 : 0;
}

/** Sorted by trust domain; a trust domain given twice is API misuse (bundles are never merged). */
function sortedUnique(bundles: Iterable<TrustBundle>, what: string): TrustBundle[] {
  const sorted = [...bundles].sort(byName);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.trustDomain.name === sorted[i - 1]!.trustDomain.name) {
      throw new TypeError(`${what}: trust domain "${sorted[i]!.trustDomain.name}" given twice`);
    }
  }
  return sorted;
}

/**
 * Memo of per-bundle renderings, keyed by bundle identity ({@link TrustBundle} is immutable): a
 * writer that renders on every change passes one, so a pass over 1,000 peers re-renders only the
 * bundles that changed. Entries go with their bundles (a WeakMap).
 */
export class RenderCache {
  readonly #memo = new WeakMap<TrustBundle, Map<string, unknown>>();

  /** The value of `key` for `bundle`, made once by `make`. */
  get<T>(bundle: TrustBundle, key: string, make: () => T): T {
    let entries = this.#memo.get(bundle);
    if (!entries) {
      entries = new Map();
      this.#memo.set(bundle, entries);
    }
    if (entries.has(key)) return entries.get(key) as T;
    const value = make();
    entries.set(key, value);
    return value;
  }
}

/** Renders without memo. */
const NO_CACHE = { get: <T>(_b: TrustBundle, _k: string, make: () => T): T => make() };

/** Why a consumer parser would refuse `a`'s key, or undefined when every one takes it. */
function consumerKeyProblem(a: X509Authority): string | undefined {
  const key = a.certificate.publicKey;
  if (key.asymmetricKeyType === 'rsa') return undefined;
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve ?? 'unknown';
    return CONSUMER_EC_CURVES.has(curve)
      ? undefined
      : `EC curve ${curve} is not P-256, P-384 or P-521 (grpc-go refuses the whole map)`;
  }
  return `key type ${key.asymmetricKeyType ?? 'unknown'} is not RSA or EC (grpc-go refuses the whole map)`;
}

/** `"kty":…` and the public members of `a`'s key, in a fixed order. */
function publicMembers(a: X509Authority): string {
  const jwk = a.certificate.publicKey.export({ format: 'jwk' });
  let out = `"kty":${JSON.stringify(jwk.kty)}`;
  for (const m of ['crv', 'x', 'y', 'n', 'e'] as const) {
    const v = jwk[m];
    if (typeof v === 'string') out += `,"${m}":${JSON.stringify(v)}`;
  }
  return out;
}

/**
 * The X.509-only SPIFFE Bundle Map both proxyless gRPC and Envoy read (see the module overview for
 * the rules and why). Deterministic: trust domains sorted by name, authorities by DER SHA-256.
 *
 * @example
 * const { text, omitted } = renderX509BundleMap(store.bundles());
 * // {"trust_domains":{"partner.example":{"keys":[{"use":"x509-svid","kty":"EC",…,"x5c":["MIIB…"]}]}}}
 */
export function renderX509BundleMap(
  bundles: Iterable<TrustBundle>,
  cache: Pick<RenderCache, 'get'> = NO_CACHE,
): X509BundleMap {
  const parts: string[] = [];
  const trustDomains: string[] = [];
  const omitted: OmittedEntry[] = [];
  for (const b of sortedUnique(bundles, 'renderX509BundleMap')) {
    const entry = cache.get(b, 'x509-map-entry', () => x509MapEntry(b));
    omitted.push(...entry.omitted);
    if (entry.json === undefined) continue;
    trustDomains.push(b.trustDomain.name);
    parts.push(entry.json);
  }
  return { text: `{"trust_domains":{${parts.join(',')}}}`, trustDomains, omitted };
}

/** One trust domain's member of the consumer map (`"<td>":{"keys":[…]}`), or none, and what was left out. */
function x509MapEntry(b: TrustBundle): { json?: string; omitted: OmittedEntry[] } {
  const td = b.trustDomain.name;
  const keys: string[] = [];
  const omitted: OmittedEntry[] = [];
  for (const a of [...b.x509Authorities].sort(bySha)) {
    const problem = consumerKeyProblem(a);
    if (problem !== undefined) {
      omitted.push({ trustDomain: td, authority: a.sha256, reason: problem });
      continue;
    }
    keys.push(`{"use":"x509-svid",${publicMembers(a)},"x5c":["${Buffer.from(a.der).toString('base64')}"]}`);
  }
  if (keys.length === 0) {
    omitted.push({
      trustDomain: td,
      reason:
        b.x509Authorities.length === 0
          ? 'no X.509 authority (an empty bundle would make the consumers refuse the whole map)'
          : 'no X.509 authority with an RSA or EC P-256/P-384/P-521 key',
    });
    return { omitted };
  }
  return { json: `${JSON.stringify(td)}:{"keys":[${keys.join(',')}]}`, omitted };
}

/** One trust domain's X.509 authorities as PEM, sorted by DER SHA-256; `''` when it has none. */
export function renderPem(bundle: TrustBundle): string {
  return [...bundle.x509Authorities]
    .sort(bySha)
    .map((a) => toPem(a.der))
    .join('');
}

/**
 * One trust domain's JWT authorities as an RFC 7517 JWK Set for JWT libraries (`use` = `sig`,
 * `kid`, `alg`; no SPIFFE members — the same entries as the OIDC discovery JWKS), sorted by `kid`.
 */
export function renderJwtJwks(bundle: TrustBundle): string {
  const sorted = [...bundle.jwtAuthorities.values()].sort((a, b) =>
    a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0,
  );
  return renderJwks(TrustBundle.create({ trustDomain: bundle.trustDomain, jwtAuthorities: sorted }));
}

/** What {@link renderOutput} renders from. */
export interface RenderOutputInput {
  /** The accepted bundles (and the local one when it should be included), one per trust domain. */
  readonly bundles: Iterable<TrustBundle>;
  /** Required for the per-trust-domain formats ({@link PER_TRUST_DOMAIN_FORMATS}); ignored otherwise. */
  readonly trustDomain?: string;
}

/** A rendered output. */
export interface RenderedOutput {
  readonly format: OutputFormat;
  /** The document; JSON formats end with a newline, as files do. */
  readonly text: string;
  /** Trust domains the document describes, sorted. */
  readonly trustDomains: readonly string[];
  /** Entries left out (consumer maps only). */
  readonly omitted: readonly OmittedEntry[];
}

/**
 * Renders one output format. Deterministic for a given set of bundles.
 *
 * @example
 * renderOutput('grpc-bundle-map', { bundles: store.bundles() }).text;
 * renderOutput('pem', { bundles: store.bundles(), trustDomain: 'partner.example' }).text;
 * @throws OutputError `ERR_OUTPUT_FORMAT` for an unknown format or a per-trust-domain format without
 *   `trustDomain`; `ERR_OUTPUT_TRUST_DOMAIN` when no bundle of `trustDomain` is among `bundles`.
 */
export function renderOutput(
  format: string,
  input: RenderOutputInput,
  cache: Pick<RenderCache, 'get'> = NO_CACHE,
): RenderedOutput {
  if (!isOutputFormat(format)) {
    throw new OutputError(
      'ERR_OUTPUT_FORMAT',
      `unknown output format ${JSON.stringify(format)}; one of ${OUTPUT_FORMATS.join(', ')}`,
    );
  }
  const bundles = sortedUnique(input.bundles, 'renderOutput');
  switch (format) {
    case 'grpc-bundle-map':
    case 'envoy-bundle-map': {
      const map = renderX509BundleMap(bundles, cache);
      return { format, text: `${map.text}\n`, trustDomains: map.trustDomains, omitted: map.omitted };
    }
    case 'bundle-map':
      return {
        format,
        // The same bytes as marshalBundleMap (and so /v1/bundles): members sorted, hints omitted.
        text: `{"trust_domains":{${bundles
          .map((b) =>
            cache.get(
              b,
              'map-entry',
              () => `${JSON.stringify(b.trustDomain.name)}:${marshalBundle(b, { refreshHint: 0 })}`,
            ),
          )
          .join(',')}}}\n`,
        trustDomains: bundles.map((b) => b.trustDomain.name),
        omitted: [],
      };
    default: {
      const td = input.trustDomain;
      if (td === undefined) {
        throw new OutputError('ERR_OUTPUT_FORMAT', `format ${format} describes one trust domain: name it`);
      }
      const bundle = bundles.find((b) => b.trustDomain.name === td);
      if (!bundle) {
        throw new OutputError(
          'ERR_OUTPUT_TRUST_DOMAIN',
          `no accepted bundle for trust domain ${JSON.stringify(td)} (held: ${bundles.map((b) => b.trustDomain.name).join(', ') || 'none'})`,
        );
      }
      const text = cache.get(bundle, format, () =>
        format === 'bundle'
          ? `${marshalBundle(bundle, { indent: 2 })}\n`
          : format === 'pem'
            ? renderPem(bundle)
            : `${renderJwtJwks(bundle)}\n`,
      );
      return { format, text, trustDomains: [td], omitted: [] };
    }
  }
}
