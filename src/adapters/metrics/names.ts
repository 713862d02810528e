/**
 * Every metric the broker exports, in one place: name, type, labels and help text.
 *
 * Names follow the Prometheus conventions (`_total` for counters, base units in the name:
 * `_seconds`). Label values are bounded: peers and trust domains come from the allowlist (plus the
 * local trust domain), servers from the config, `result` from a fixed set per metric, and `reason`
 * is an `ERR_*` code from docs/errors.md or `none`. docs/metrics.md documents each entry; a test
 * fails when one is missing there, and another when a dashboard panel or alert queries a name that
 * is not defined here.
 * @module
 */

/** Prometheus metric types the broker uses. */
export type MetricType = 'counter' | 'gauge' | 'histogram';

/** One metric's definition. */
export interface MetricDef {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labels: readonly string[];
  /** Histogram bucket upper bounds, seconds. */
  readonly buckets?: readonly number[];
}

/**
 * Buckets for network round trips and SPIRE calls: 5 ms to 60 s (a held long-poll answers within
 * its 55 s wait).
 */
export const NETWORK_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/**
 * Buckets for propagation (new peer sequence first seen → written to every target server): from
 * 10 ms, the order of a local SPIRE write, up to 10 minutes, beyond which a peer is in trouble anyway.
 */
export const PROPAGATION_BUCKETS: readonly number[] = [
  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
];

/**
 * Buckets for one SVID verification: 10 µs (a cache hit) to 100 ms (a cold RSA chain under load).
 */
export const VERIFY_BUCKETS: readonly number[] = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

function def(
  name: string,
  type: MetricType,
  labels: readonly string[],
  help: string,
  buckets?: readonly number[],
): MetricDef {
  return buckets ? { name, type, help, labels, buckets } : { name, type, help, labels };
}

/** The metric definitions, keyed by the name {@link BrokerMetrics} uses internally. */
export const METRICS = {
  buildInfo: def(
    'spiffe_broker_build_info',
    'gauge',
    ['version', 'node_version'],
    'Always 1; the labels identify the running broker build and Node.js version.',
  ),
  bundleFetchTotal: def(
    'spiffe_broker_bundle_fetch_total',
    'counter',
    ['peer', 'result', 'reason'],
    'Peer bundle fetch attempts by outcome (updated, unchanged, refused, failed) and ERR_ code (none on success).',
  ),
  bundleFetchDuration: def(
    'spiffe_broker_bundle_fetch_duration_seconds',
    'histogram',
    ['peer', 'result'],
    'Duration of peer bundle fetch attempts, including the time a long-poll was held.',
    NETWORK_BUCKETS,
  ),
  bundleSequence: def(
    'spiffe_broker_bundle_sequence',
    'gauge',
    ['trust_domain'],
    'spiffe_sequence of the bundle held for the trust domain (a float: exact up to 2^53).',
  ),
  bundleAge: def(
    'spiffe_broker_bundle_age_seconds',
    'gauge',
    ['trust_domain'],
    'Seconds since the held bundle was last confirmed current by its source (accepted or answered unchanged).',
  ),
  bundleRefreshHint: def(
    'spiffe_broker_bundle_refresh_hint_seconds',
    'gauge',
    ['trust_domain'],
    'Effective refresh hint of the held bundle (the published hint clamped to the peer’s bounds).',
  ),
  authorityExpiry: def(
    'spiffe_broker_authority_expiry_seconds',
    'gauge',
    ['trust_domain', 'kind'],
    'Seconds until the earliest-expiring authority of the held bundle expires (negative once expired), computed at scrape time; kind is x509 or jwt.',
  ),
  peerState: def(
    'spiffe_broker_peer_state',
    'gauge',
    ['trust_domain', 'state'],
    'Peer state: 1 for the current state (ACTIVE, STALE, FAILING, PENDING, UNAVAILABLE, REVOKED), 0 for the others.',
  ),
  spireSyncTotal: def(
    'spiffe_broker_spire_sync_total',
    'counter',
    ['server', 'result'],
    'Reconcile passes against a SPIRE server by result (ok, partial, error).',
  ),
  spireSyncDuration: def(
    'spiffe_broker_spire_sync_duration_seconds',
    'histogram',
    ['server'],
    'Duration of reconcile passes against a SPIRE server.',
    NETWORK_BUCKETS,
  ),
  spireWriteTotal: def(
    'spiffe_broker_spire_bundle_write_total',
    'counter',
    ['server', 'operation', 'result'],
    'Federated bundle writes (set) and deletions (revoked, drift) sent to a SPIRE server, by item result (ok, error).',
  ),
  propagation: def(
    'spiffe_broker_propagation_seconds',
    'histogram',
    [],
    'Time from a peer’s new bundle sequence first seen to it being written to every target SPIRE server.',
    PROPAGATION_BUCKETS,
  ),
  outputFileWriteTotal: def(
    'spiffe_broker_output_file_write_total',
    'counter',
    ['format', 'result'],
    'Files of the file outputs by format and result: written (bytes changed), removed (a trust domain left), error (the previous file kept).',
  ),
  outputPassDuration: def(
    'spiffe_broker_output_pass_duration_seconds',
    'histogram',
    ['output'],
    'Duration of output passes: render every configured format of the accepted bundles and write what changed.',
    NETWORK_BUCKETS,
  ),
  relayRequestsTotal: def(
    'spiffe_broker_relay_requests_total',
    'counter',
    ['result'],
    'Requests for relayed peer bundles (GET /bundles/<trust domain>) by result: served, not_modified, not_found, too_many.',
  ),
  oidcRequestsTotal: def(
    'spiffe_broker_oidc_requests_total',
    'counter',
    ['document', 'result'],
    'Requests to the OIDC discovery listener by document (discovery, jwks, peer_discovery, peer_jwks) and result: served, not_modified, not_found, not_ready.',
  ),
  driftBundles: def(
    'spiffe_broker_drift_bundles',
    'gauge',
    ['server'],
    'Federated bundles present in a SPIRE server that neither the allowlist nor SPIRE’s own federation relationships account for.',
  ),
  conflictBundles: def(
    'spiffe_broker_conflict_bundles',
    'gauge',
    ['server'],
    'Allowlisted trust domains a SPIRE server also federates with through its own relationships (left alone).',
  ),
  revocationBlocked: def(
    'spiffe_broker_revocation_blocked',
    'gauge',
    ['server', 'trust_domain'],
    'A revoked peer whose bundle a SPIRE server refused to delete (restrict mode: registration entries federate with it); the value is the number of those entries SPIRE named (1 when it named none). Absent once the deletion is confirmed.',
  ),
  verifyTotal: def(
    'spiffe_broker_verify_total',
    'counter',
    ['trust_domain', 'kind', 'result', 'reason'],
    'SVID verifications by trust domain (unknown when no bundle is held for it), kind (x509, jwt), result (ok, refused) and ERR_ code.',
  ),
  verifyDuration: def(
    'spiffe_broker_verify_duration_seconds',
    'histogram',
    ['kind'],
    'Duration of one SVID verification (parsing, cache lookup and signature checks).',
    VERIFY_BUCKETS,
  ),
  mtlsProbeSuccess: def(
    'spiffe_broker_mtls_probe_success',
    'gauge',
    ['peer'],
    '1 when the last cross-domain mTLS probe of the peer’s broker succeeded in both directions with the bundles the SPIRE servers hold, else 0.',
  ),
  mtlsProbeDuration: def(
    'spiffe_broker_mtls_probe_duration_seconds',
    'gauge',
    ['peer'],
    'Duration of the last cross-domain mTLS probe of the peer (connect, handshake, both verdicts).',
  ),
  mtlsProbeTotal: def(
    'spiffe_broker_mtls_probe_total',
    'counter',
    ['peer', 'result', 'reason'],
    'Cross-domain mTLS probes by result (ok, failed) and ERR_ code (none on success).',
  ),
  heldRequests: def(
    'spiffe_broker_endpoint_held_requests',
    'gauge',
    [],
    'Bundle endpoint requests held open for change notification (long-polls) right now.',
  ),
  fetchIdleConnections: def(
    'spiffe_broker_fetch_idle_connections',
    'gauge',
    [],
    'Bundle endpoint connections kept open between polls right now (fetch.keepAlive).',
  ),
  fetchIdleConnectionsMax: def(
    'spiffe_broker_fetch_idle_connections_max',
    'gauge',
    [],
    'Most bundle endpoint connections kept open between polls at once (fetch.keepAlive.maxIdle; auto: one per allowlisted peer, at least 1024).',
  ),
  fetchConnectionReuses: def(
    'spiffe_broker_fetch_connection_reuses_total',
    'counter',
    [],
    'Peer bundle requests sent on a kept-open connection instead of a new TCP and TLS handshake.',
  ),
  allowlistReloadSuccess: def(
    'spiffe_broker_allowlist_reload_success',
    'gauge',
    [],
    '1 when the last allowlist (re)load succeeded, 0 when it was refused (the previous allowlist stays in force).',
  ),
  allowlistReloadTimestamp: def(
    'spiffe_broker_allowlist_reload_timestamp_seconds',
    'gauge',
    [],
    'Unix time of the last successful allowlist (re)load.',
  ),
  allowlistPeers: def('spiffe_broker_allowlist_peers', 'gauge', [], 'Peers in the allowlist in force.'),
  auditWriteFailures: def(
    'spiffe_broker_audit_write_failures_total',
    'counter',
    [],
    'Audit records that could not be written (the change they describe still happened).',
  ),
} as const satisfies Record<string, MetricDef>;

/** Every metric definition, in declaration order. */
export const METRIC_DEFS: readonly MetricDef[] = Object.values(METRICS);

/**
 * The values of `spiffe_broker_peer_state`'s `state` label: every lifecycle state of a peer
 * (docs/design.md). Each peer has one series per state; the current one is 1.
 */
export const PEER_STATES = ['PENDING', 'ACTIVE', 'STALE', 'FAILING', 'UNAVAILABLE', 'REVOKED'] as const;

/** A peer's lifecycle state. */
export type PeerStateName = (typeof PEER_STATES)[number];
