/**
 * The SPIFFE bundle endpoint of the local trust domain (SPIFFE Federation §4, §5.2).
 *
 * - {@link LocalBundle} reads the local bundle from SPIRE (GetBundle), polled and on demand, and
 *   keeps the served document pre-serialized with a strong ETag.
 * - {@link bundleEndpointPlugin} / {@link buildBundleEndpointApp}: the fastify app (never listens by
 *   itself): `GET /` for every SPIFFE client, plus conditional requests and change notification
 *   (`If-None-Match` + `Prefer: wait`) for brokers; an optional Bundle Map route; optional relay
 *   of accepted peer bundles at `GET /bundles/<trust domain>` (allowlist `relay: true`).
 * - {@link HeldRequests}: the bounded set of held change-notification requests.
 * - {@link startBundleEndpoint} / {@link runBundleEndpoint}: HTTPS listener with the two TLS
 *   profiles — https_web ({@link FileTlsCredentials}, hot-reloaded files) and https_spiffe
 *   ({@link MintedSvidCredentials}, an X509-SVID minted through SPIRE and renewed at half-life, or
 *   {@link WorkloadApiSvidCredentials}, the SVID streamed by a SPIFFE Workload API socket).
 *
 * See docs/endpoint.md.
 * @module
 */
export type {
  BundleEndpointApp,
  BundleEndpointAppOptions,
  BundleEndpointController,
  BundleEndpointOptions,
  FederatedBundlesProvider,
  PublishedBundleProvider,
  RelayedBundlesProvider,
  RelayRequestResult,
} from './app.js';
export {
  buildBundleEndpointApp,
  bundleEndpointPlugin,
  DEFAULT_MAX_HELD_REQUESTS,
  DEFAULT_RETRY_AFTER_SECONDS,
  MAX_WAIT_SECONDS,
  RELAY_PATH_PREFIX,
} from './app.js';
export type { IfNoneMatch } from './conditional.js';
export { evaluateIfNoneMatch, preferredWaitSeconds } from './conditional.js';
export type { EndpointDeps, EndpointLogger } from './deps.js';
export { defaultEndpointDeps, NULL_LOGGER } from './deps.js';
export type { HeldRequest, ReleaseReason } from './held-requests.js';
export { DEFAULT_HOLD_TICK_MS, HeldRequests } from './held-requests.js';
export type { LocalBundleGetter, LocalBundleOptions, PollOutcome, PublishedBundle } from './local-bundle.js';
export {
  DEFAULT_FETCH_TIMEOUT_MS,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_REFRESH_HINT_SECONDS,
  entityTag,
  LocalBundle,
  MAX_RECOMMENDED_REFRESH_HINT_SECONDS,
  MIN_RECOMMENDED_REFRESH_HINT_SECONDS,
} from './local-bundle.js';
export type { BundleEndpointServerOptions, RunningBundleEndpoint } from './server.js';
export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  INTERMEDIATE_TLS12_CIPHERS,
  runBundleEndpoint,
  startBundleEndpoint,
} from './server.js';
export type { MintedSvidCredentialsOptions, X509SvidMinter } from './svid-credentials.js';
export {
  DEFAULT_ENDPOINT_ID_PATH,
  MAX_MINT_RETRY_MS,
  MIN_MINT_RETRY_MS,
  MintedSvidCredentials,
  validateEndpointSvid,
} from './svid-credentials.js';
export type {
  CredentialRefusal,
  FileTlsCredentialsOptions,
  TlsCredentialSource,
  TlsCredentials,
} from './tls-credentials.js';
export {
  CredentialHolder,
  chainToPem,
  DEFAULT_FILE_POLL_INTERVAL_MS,
  FileTlsCredentials,
  validateTlsCredentials,
} from './tls-credentials.js';
export type {
  StreamedX509Svid,
  WorkloadApiSvidCredentialsOptions,
  X509SvidStream,
} from './workload-credentials.js';
export { WorkloadApiSvidCredentials } from './workload-credentials.js';
