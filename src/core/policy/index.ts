/**
 * Policy: pure decisions on peers' validated bundles — may this candidate replace the current
 * bundle (trust domain, sequence rollback, empty bundle, key policy), and which lifecycle state a
 * peer is in. Pure: no I/O, no clock (time is passed in), no framework; it depends only on
 * spiffeid/ and bundle/. Allowlist entries (`PeerConfig` from config/) satisfy {@link PeerPolicy}
 * structurally, so config depends on policy's shapes and never the reverse.
 * @module
 */
export type {
  KeyDescription,
  KeyPolicy,
  KeyTypeName,
  PeerBundleDecision,
  PeerBundleInput,
  PeerPolicy,
} from './evaluate.js';
export {
  checkKeyPolicy,
  DEFAULT_KEY_POLICY,
  describePublicKey,
  evaluatePeerBundle,
  MAX_ACCEPTED_BUNDLE_KEYS,
  requireAllowlisted,
  resetSequenceBaseline,
} from './evaluate.js';
export type { PeerEvent, PeerState, PeerStateOptions, PeerStateReason, PeerStatus } from './peer-state.js';
export { DEFAULT_PEER_HINT_SECONDS, initialPeerState, nextPeerState } from './peer-state.js';
