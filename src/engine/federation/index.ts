/**
 * Federation: getting peers' bundles. {@link fetchPeerBundle} performs one fetch and validation
 * from a peer's bundle endpoint (both SPIFFE Federation profiles, failover across the configured
 * URLs, limits, redirects, conditional GET and long-poll); {@link StateStore} keeps each peer's
 * last-known-good bundle and sequence high-water mark on disk, crash-safely. The updater (one
 * peer) and manager (all peers) build on these.
 * @module
 */
export type {
  FetchDeps,
  FetchedBundle,
  FetchFailover,
  FetchLimits,
  FetchNotModified,
  FetchProfile,
  FetchRequest,
  FetchResult,
} from './fetch.js';
export {
  checkEndpointUrl,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_FETCH_TIMEOUT_MS,
  DEFAULT_MAX_REDIRECTS,
  fetchPeerBundle,
  MAX_WAIT_SECONDS,
} from './fetch.js';
export type { TlsConnect } from './http.js';
export type { IdleConnection } from './idle-connections.js';
export { DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_IDLE, IdleConnections } from './idle-connections.js';
export type {
  BundleEnvelope,
  LoadAllResult,
  PeerState,
  SequenceEnvelope,
  StateFileHandle,
  StateFs,
  StateStoreDeps,
  StateStoreOptions,
  StoredBundle,
} from './state-store.js';
export { nodeStateFs, StateStore, stateFileStem } from './state-store.js';
