/**
 * Metrics: a typed façade ({@link BrokerMetrics}) over an injected prom-client registry, with
 * intent-named operations, plus the propagation tracker. Every metric name, label and help text is
 * in `names.ts` and documented in docs/metrics.md. This folder is the only importer of prom-client.
 * @module
 */
export type {
  BrokerMetricsOptions,
  FetchResult,
  Registry,
  SpireSyncResult,
  SvidKind,
  SyncDriftStatus,
  VerifyResult,
} from './broker-metrics.js';
export { BrokerMetrics, createMetricsRegistry, PropagationTracker, reasonLabel } from './broker-metrics.js';
export type { MetricDef, MetricType, PeerStateName } from './names.js';
export {
  METRIC_DEFS,
  METRICS,
  NETWORK_BUCKETS,
  PEER_STATES,
  PROPAGATION_BUCKETS,
  VERIFY_BUCKETS,
} from './names.js';
