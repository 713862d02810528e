import type { KeyObject } from 'node:crypto';
import type { JwtAuthority, TrustBundle } from './trust-bundle.js';

/**
 * OpenID Connect discovery for a trust domain's JWT-SVIDs: the JWK Set of its JWT authorities
 * (RFC 7517 §5) and the provider metadata document that points at it (OpenID Connect Discovery
 * 1.0 §3), so an OIDC relying party (a cloud's workload identity federation, go-oidc, …) can
 * verify JWT-SVIDs without speaking SPIFFE. Pure: documents in, strings out.
 * @module
 */

/** Path of the provider metadata document under the issuer (OpenID Connect Discovery 1.0 §4). */
export const OIDC_DISCOVERY_PATH = '/.well-known/openid-configuration';
/** Default path of the JWK Set, relative to the issuer (SPIRE's OIDC discovery provider uses `/keys`). */
export const DEFAULT_JWKS_PATH = '/keys';

/**
 * JWS algorithm a JWT-SVID signed with `key` carries (RFC 7518 §3.1): what SPIRE signs with for
 * its JWT key types (EC P-256/P-384 → ES256/ES384, RSA → RS256), plus P-521 and Ed25519 for
 * other issuers. Undefined for a key no JWS algorithm covers.
 */
export function jwsAlgorithmOf(key: KeyObject): string | undefined {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1' || curve === 'P-256') return 'ES256';
      if (curve === 'secp384r1' || curve === 'P-384') return 'ES384';
      if (curve === 'secp521r1' || curve === 'P-521') return 'ES512';
      return undefined;
    }
    case 'rsa':
      return 'RS256';
    case 'ed25519':
      return 'EdDSA';
    default:
      return undefined;
  }
}

/** Public key members of a JWK, in a fixed order (RFC 7518 §6.2.1, §6.3.1; RFC 8037 §2). */
const PUBLIC_MEMBERS = ['crv', 'x', 'y', 'n', 'e'] as const;

/**
 * One JWT authority as an RFC 7517 JWK for OIDC consumers: `kty`, `kid`, `use` = `sig` (RFC 7517
 * §4.2: the key verifies signatures) and the public key members only. SPIFFE-specific members
 * (`use` = `jwt-svid`, anything `spiffe_*`) are not carried over, since OIDC libraries expect
 * `sig` or no `use` at all.
 */
function jwkEntry(a: JwtAuthority): string {
  const jwk = a.publicKey.export({ format: 'jwk' });
  let out = `{"kty":${JSON.stringify(jwk.kty)},"kid":${JSON.stringify(a.kid)},"use":"sig"`;
  const alg = jwsAlgorithmOf(a.publicKey);
  if (alg !== undefined) out += `,"alg":"${alg}"`;
  for (const m of PUBLIC_MEMBERS) {
    const v = jwk[m];
    if (typeof v === 'string') out += `,"${m}":${JSON.stringify(v)}`;
  }
  return `${out}}`;
}

/**
 * The JWK Set of a bundle's JWT authorities (RFC 7517 §5), compact JSON: `{"keys":[…]}` with one
 * entry per JWT authority in bundle order, each `use` = `sig` with its `kid` and `alg`. X.509
 * authorities, `spiffe_sequence` and `spiffe_refresh_hint` are left out: they mean nothing to an
 * OIDC relying party. An empty set (`{"keys":[]}`) means no JWT-SVID of the domain verifies.
 *
 * @example
 * const jwks = renderJwks(bundle); // '{"keys":[{"kty":"EC","kid":"…","use":"sig","alg":"ES256",…}]}'
 */
export function renderJwks(bundle: TrustBundle): string {
  const entries: string[] = [];
  for (const a of bundle.jwtAuthorities.values()) entries.push(jwkEntry(a));
  return `{"keys":[${entries.join(',')}]}`;
}

/**
 * JWS algorithms the bundle's JWT authorities sign with, sorted and without repeats; `["ES256"]`
 * when there is none (OpenID Connect Discovery 1.0 §3 requires a non-empty list, and SPIRE's
 * default JWT key type signs ES256).
 */
export function signingAlgorithms(bundle: TrustBundle): string[] {
  const algs = new Set<string>();
  for (const a of bundle.jwtAuthorities.values()) {
    const alg = jwsAlgorithmOf(a.publicKey);
    if (alg !== undefined) algs.add(alg);
  }
  return algs.size === 0 ? ['ES256'] : [...algs].sort();
}

/** What {@link renderOidcDiscovery} publishes besides the keys. */
export interface OidcDiscoveryInit {
  /** The issuer: exactly the `iss` of the JWT-SVIDs consumers verify (SPIRE's `jwt_issuer`). */
  readonly issuer: string;
  /** Absolute URL of the JWK Set. */
  readonly jwksUri: string;
}

/**
 * The OpenID Provider metadata document (OpenID Connect Discovery 1.0 §3) for JWT-SVIDs, compact
 * JSON: `issuer`, `jwks_uri`, `response_types_supported` (`["id_token"]`),
 * `subject_types_supported` (`["public"]`: the subject is the SPIFFE ID) and
 * `id_token_signing_alg_values_supported` (from the bundle's keys). There is no authorization
 * endpoint: nothing here issues tokens.
 */
export function renderOidcDiscovery(bundle: TrustBundle, init: OidcDiscoveryInit): string {
  return JSON.stringify({
    issuer: init.issuer,
    jwks_uri: init.jwksUri,
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: signingAlgorithms(bundle),
  });
}

/**
 * Why `issuer` cannot be an OIDC issuer, or undefined when it can: an absolute `https` URL (or
 * `http` when `allowHttp`, for tests behind nothing) with no query, fragment or user info and no
 * trailing slash (OpenID Connect Discovery 1.0 §2 and §4.3: consumers compare it byte for byte
 * with the token's `iss`, so `https://a/` and `https://a` differ).
 */
export function issuerProblem(
  issuer: string,
  opts: { readonly allowHttp?: boolean } = {},
): string | undefined {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return 'must be an absolute URL such as https://oidc.example.org';
  }
  if (url.protocol !== 'https:' && !(opts.allowHttp && url.protocol === 'http:')) {
    return 'must use the https scheme (OpenID Connect Discovery §2)';
  }
  if (url.search !== '' || issuer.includes('?')) return 'must not have a query';
  if (url.hash !== '' || issuer.includes('#')) return 'must not have a fragment';
  if (url.username !== '' || url.password !== '') return 'must not carry user info';
  if (issuer.endsWith('/')) return 'must not end with "/" (consumers compare it with the token iss exactly)';
  return undefined;
}

/** The default `jwks_uri` of an issuer: `<issuer>/keys`. */
export function defaultJwksUri(issuer: string): string {
  return `${issuer}${DEFAULT_JWKS_PATH}`;
}

/** The URL of an issuer's provider metadata: `<issuer>/.well-known/openid-configuration` (§4). */
export function discoveryUrl(issuer: string): string {
  return `${issuer}${OIDC_DISCOVERY_PATH}`;
}
