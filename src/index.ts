/**
 * spiffe-broker's library API: SPIFFE IDs, trust bundles, SVID verification and the Node TLS
 * helper. Each area is also its own entry point (`spiffe-broker/spiffeid`, `/bundle`, `/verify`,
 * `/tls`); this root re-exports their main names explicitly.
 * @module
 */
export type {
  BundleSource,
  JwtAuthority,
  ParsedBundle,
  ParsedBundleMap,
  X509Authority,
} from './bundle/index.js';
export {
  BundleSet,
  bundlesEqual,
  diffBundles,
  marshalBundle,
  marshalBundleMap,
  parseBundle,
  parseBundleMap,
  TrustBundle,
} from './bundle/index.js';
export type { ErrorCode } from './errors.js';
export {
  BrokerError,
  BundleError,
  ConfigError,
  FetchError,
  isBrokerError,
  PolicyError,
  RuntimeError,
  SpiffeIdError,
  SpireError,
  VerifyError,
} from './errors.js';
export type { SpiffeIdMatcher } from './spiffeid/index.js';
export { matchAny, matchId, matchMemberOf, matchOneOf, SpiffeId, TrustDomain } from './spiffeid/index.js';
export type { SpiffeTlsOptions } from './tls/index.js';
export { tlsOptions } from './tls/index.js';
export type { JwtSvidVerifyResult, X509SvidVerifyResult } from './verify/index.js';
export { verifyJwtSvid, verifyX509Svid, X509VerifyCache } from './verify/index.js';
