/**
 * The cross-domain mTLS probe: each broker serves a probe TLS port with its own X509-SVID and, on
 * an injected clock, handshakes with every allowlisted peer broker's probe port, judging both
 * directions with the bundles exactly as the SPIRE servers hold them — so a published rotation that
 * is not yet trusted shows up in `spiffe_broker_mtls_probe_success{peer}` before workloads fail.
 * See docs/verification.md.
 * @module
 */
export type {
  BundlesAsSpireHolds,
  MtlsProbeOptions,
  ProbePeer,
  ProbeResult,
  ProbeVerdict,
  SpireHeldBundle,
} from './mtls-probe.js';
export {
  DEFAULT_INBOUND_SPIRE_READS,
  DEFAULT_PROBE_INTERVAL_MS,
  DEFAULT_PROBE_TIMEOUT_MS,
  MAX_VERDICT_BYTES,
  MtlsProbe,
  parseVerdict,
} from './mtls-probe.js';
export type { BucketRate } from './rate-limit.js';
export { KeyedRateLimiter } from './rate-limit.js';
