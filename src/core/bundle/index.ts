/**
 * SPIFFE trust bundles: the {@link TrustBundle} value, the strict parser and serializer for the
 * SPIFFE bundle format and Bundle Maps, equality and diffs, and the pure refresh schedule.
 * Pure: no I/O, no process state.
 * @module
 */
export type { ParsedBundleMap } from './bundle-map.js';
export {
  DEFAULT_MAX_BUNDLE_MAP_BYTES,
  DEFAULT_PEER_BUNDLE_BYTES,
  MAX_BUNDLE_MAP_TRUST_DOMAINS,
  marshalBundleMap,
  parseBundleMap,
} from './bundle-map.js';
export type { BundleParseOptions, IgnoredEntry, MarshalOptions, ParsedBundle } from './codec.js';
export {
  DEFAULT_MAX_BUNDLE_BYTES,
  DEFAULT_MAX_BUNDLE_KEYS,
  MAX_KEY_ID_BYTES,
  marshalBundle,
  parseBundle,
} from './codec.js';
export type { BundleDiff, EqualityOptions } from './diff.js';
export { authoritiesUnchanged, bundlesEqual, diffBundles } from './diff.js';
export type { OidcDiscoveryInit } from './oidc.js';
export {
  DEFAULT_JWKS_PATH,
  defaultJwksUri,
  discoveryUrl,
  issuerProblem,
  jwsAlgorithmOf,
  OIDC_DISCOVERY_PATH,
  renderJwks,
  renderOidcDiscovery,
  signingAlgorithms,
} from './oidc.js';
export type {
  OmittedEntry,
  OutputFormat,
  RenderedOutput,
  RenderOutputInput,
  X509BundleMap,
} from './outputs.js';
export {
  isOutputFormat,
  OUTPUT_FORMATS,
  PER_TRUST_DOMAIN_FORMATS,
  RenderCache,
  renderJwtJwks,
  renderOutput,
  renderPem,
  renderX509BundleMap,
} from './outputs.js';
export type { RefreshPolicy } from './refresh.js';
export {
  backoffDelay,
  DEFAULT_MAX_REFRESH_HINT_SECONDS,
  effectiveRefreshHint,
  FEDERATION_REFRESH_POLICY,
  nextRefreshDelay,
} from './refresh.js';
export type { BundleSource } from './source.js';
export { BundleSet } from './source.js';
export type { JwtAuthority, TrustBundleInit, X509Authority } from './trust-bundle.js';
export { jwtAuthority, MAX_SEQUENCE, TrustBundle, x509AuthorityFromDer } from './trust-bundle.js';
