/**
 * Federation: getting peers' bundles. {@link fetchPeerBundle} performs one fetch and validation
 * from a peer's bundle endpoint (both SPIFFE Federation profiles, failover across the configured
 * URLs, limits, redirects, conditional GET and long-poll); {@link StateStore} keeps each peer's
 * last-known-good bundle and sequence high-water mark on disk, crash-safely. The updater (one
 * peer) and manager (all peers) build on these.
 * @module
 */
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
