/**
 * An in-process SPIRE server API emulator: the Bundle, TrustDomain, SVID and gRPC Health
 * services of SPIRE v1.15 over a real unix socket (and optionally mTLS TCP with `admin_ids`
 * authorization), with SPIRE's batch/paging/mask semantics and messages, its own CA with
 * prepare/activate/taint/revoke rotation, and fault injection. For unit tests, the lab and users'
 * own tests; differences from real SPIRE are listed in docs/spire-emulator.md.
 * @module
 */
export type { AuthorityInfo, AuthorityState } from './authority.js';
export type { DeleteMode, StoredBundle, StoredRelationship } from './datastore.js';
export { EmulatorDatastore } from './datastore.js';
export type {
  EmulatorCall,
  EmulatorEndpoints,
  EmulatorSvid,
  SpireEmulatorOptions,
} from './emulator.js';
export { SpireEmulator } from './emulator.js';
export type { FaultDecision, FaultSpec, MethodMatcher } from './faults.js';
export { EmulatorFaults } from './faults.js';
