/**
 * spiffe-broker's library API: SPIFFE IDs, trust bundles, SVID verification and the Node TLS
 * helper. Each area is also its own entry point (`spiffe-broker/spiffeid`, `/bundle`, `/verify`,
 * `/tls`); this root re-exports their main names explicitly.
 * @module
 */

export type { SpiffeTlsOptions } from './adapters/tls/index.js';
export { tlsOptions } from './adapters/tls/index.js';
export type {
  BundleSource,
  JwtAuthority,
  ParsedBundle,
  ParsedBundleMap,
  X509Authority,
} from './core/bundle/index.js';
export {
  BundleSet,
  bundlesEqual,
  diffBundles,
  marshalBundle,
  marshalBundleMap,
  parseBundle,
  parseBundleMap,
  TrustBundle,
} from './core/bundle/index.js';
export type { SpiffeIdMatcher } from './core/spiffeid/index.js';
export {
  matchAny,
  matchId,
  matchMemberOf,
  matchOneOf,
  SpiffeId,
  TrustDomain,
} from './core/spiffeid/index.js';
export type { JwtSvidVerifyResult, X509SvidVerifyResult } from './core/verify/index.js';
export { verifyJwtSvid, verifyX509Svid, X509VerifyCache } from './core/verify/index.js';
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
