import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { FederationObserver } from '../../engine/federation/manager.js';
import type { BatchItemResult, SpireSyncObserver } from '../../engine/publish/spire-sync.js';
import { METRICS, type MetricDef, PEER_STATES, type PeerStateName } from './names.js';

/** A fresh, empty metrics registry (the daemon makes one; every test makes its own). */
export function createMetricsRegistry(): Registry {
  return new Registry();
}

export type { Registry } from 'prom-client';

/** Outcome of one peer bundle fetch attempt. */
export type FetchResult = 'updated' | 'unchanged' | 'refused' | 'failed';
/** Outcome of one reconcile pass against a SPIRE server. */
export type SpireSyncResult = 'ok' | 'partial' | 'error';
/** Outcome of one SVID verification. */
export type VerifyResult = 'ok' | 'refused';
/** Which kind of SVID was verified. */
export type SvidKind = 'x509' | 'jwt';

/** What a server's sync reports for the drift gauges (ServerSyncStatus fits). */
export interface SyncDriftStatus {
  readonly name: string;
  readonly drift: readonly string[];
  readonly conflicts: readonly string[];
  /** Per trust domain sync state; entries whose error is a blocked revocation are exported. */
  readonly trustDomains?: ReadonlyMap<
    string,
    { readonly error?: { readonly code: string }; readonly blockingEntries?: number }
  >;
}

/** Options of {@link BrokerMetrics}. */
export interface BrokerMetricsOptions {
  /** Where the metrics are registered (a fresh one per test). */
  readonly registry: Registry;
  /** Scrape-time clock for ages and time-to-expiry (ms since the epoch). */
  readonly clock: { now(): number };
  /**
   * The bundles the broker holds (local and federated), read at every scrape for
   * `spiffe_broker_authority_expiry_seconds`, so the value stays true between changes.
   */
  readonly bundles?: () => Iterable<TrustBundle>;
  /** Long-polls held by the bundle endpoint, read at every scrape. */
  readonly heldRequests?: () => number;
  /** The kept-open fetch connections (e.g. the daemon's IdleConnections), read at every scrape. */
  readonly fetchConnections?: () => { readonly idle: number; readonly max: number; readonly reused: number };
  /** Per-server drift and conflicts (e.g. every SpireServerSync's `status()`), read at every scrape. */
  readonly syncStatus?: () => Iterable<SyncDriftStatus>;
  /** Values of `spiffe_broker_build_info`. */
  readonly build?: { readonly version: string; readonly nodeVersion?: string };
}

/** Matches a documented error code; anything else is reported as `other` to bound cardinality. */
const ERROR_CODE = /^ERR_[A-Z0-9_]{1,60}$/;

/** A bounded `reason` label value: the ERR_ code, `none` when absent, `other` when not a code. */
export function reasonLabel(reason: string | undefined): string {
  if (reason === undefined || reason === '' || reason === 'none') return 'none';
  return ERROR_CODE.test(reason) ? reason : 'other';
}

function counter(registry: Registry, d: MetricDef): Counter<string> {
  return new Counter({ name: d.name, help: d.help, labelNames: [...d.labels], registers: [registry] });
}

function gauge(registry: Registry, d: MetricDef, collect?: (this: Gauge<string>) => void): Gauge<string> {
  return new Gauge({
    name: d.name,
    help: d.help,
    labelNames: [...d.labels],
    registers: [registry],
    ...(collect ? { collect } : {}),
  });
}

function histogram(registry: Registry, d: MetricDef): Histogram<string> {
  return new Histogram({
    name: d.name,
    help: d.help,
    labelNames: [...d.labels],
    buckets: [...(d.buckets ?? [])],
    registers: [registry],
  });
}

/** Seconds, never negative or NaN (a clock stepping back must not produce negative durations). */
function seconds(value: number): number {
  return Number.isFinite(value) && value > 0 ? value : 0;
}

/**
 * The broker's metrics as intent-named operations over an injected prom-client registry: the
 * only importer of prom-client. Metric names, labels and help text live in `names.ts`
 * (docs/metrics.md documents them).
 *
 * Values that depend on time — bundle age, time until an authority expires — are computed at scrape
 * time from the injected clock and providers, so they stay true between changes.
 *
 * @example
 * const metrics = new BrokerMetrics({ registry: createMetricsRegistry(), clock: systemClock,
 *   bundles: () => [local.bundle(), ...store.bundles()] });
 * metrics.observeFetch({ peer: 'b.test', result: 'updated', durationSeconds: 0.12 });
 * const { contentType, body } = await metrics.expose();
 */
export class BrokerMetrics {
  readonly registry: Registry;
  readonly #clock: { now(): number };
  readonly #confirmedAt = new Map<string, number>();
  /** Label sets with a free-valued label (reason, result) recorded per peer, for {@link removePeer}. */
  readonly #peerSeries = new Map<
    string,
    Map<string, { metric: Counter<string> | Histogram<string>; labels: Record<string, string> }>
  >();
  readonly #fetchTotal: Counter<string>;
  readonly #fetchDuration: Histogram<string>;
  readonly #sequence: Gauge<string>;
  readonly #refreshHint: Gauge<string>;
  readonly #peerState: Gauge<string>;
  readonly #syncTotal: Counter<string>;
  readonly #outputFiles: Counter<string>;
  readonly #outputPass: Histogram<string>;
  readonly #relayRequests: Counter<string>;
  readonly #oidcRequests: Counter<string>;
  readonly #syncDuration: Histogram<string>;
  readonly #writeTotal: Counter<string>;
  readonly #propagation: Histogram<string>;
  readonly #drift: Gauge<string>;
  readonly #conflicts: Gauge<string>;
  readonly #verifyTotal: Counter<string>;
  readonly #verifyDuration: Histogram<string>;
  readonly #probeSuccess: Gauge<string>;
  readonly #probeDuration: Gauge<string>;
  readonly #probeTotal: Counter<string>;
  readonly #reloadSuccess: Gauge<string>;
  readonly #reloadTimestamp: Gauge<string>;
  readonly #allowlistPeers: Gauge<string>;
  readonly #auditFailures: Counter<string>;

  constructor(opts: BrokerMetricsOptions) {
    if (!(opts?.registry instanceof Registry)) {
      throw new TypeError(
        'BrokerMetrics: opts.registry must be a prom-client Registry (createMetricsRegistry())',
      );
    }
    if (typeof opts.clock?.now !== 'function')
      throw new TypeError('BrokerMetrics: opts.clock.now is required');
    const r = opts.registry;
    this.registry = r;
    this.#clock = opts.clock;
    const clock = opts.clock;

    const build = gauge(r, METRICS.buildInfo);
    build.set(
      { version: opts.build?.version ?? 'unknown', node_version: opts.build?.nodeVersion ?? 'unknown' },
      1,
    );

    this.#fetchTotal = counter(r, METRICS.bundleFetchTotal);
    this.#fetchDuration = histogram(r, METRICS.bundleFetchDuration);
    this.#sequence = gauge(r, METRICS.bundleSequence);
    this.#refreshHint = gauge(r, METRICS.bundleRefreshHint);
    const confirmedAt = this.#confirmedAt;
    gauge(r, METRICS.bundleAge, function collect() {
      const now = clock.now();
      this.reset();
      for (const [td, at] of confirmedAt) this.set({ trust_domain: td }, seconds((now - at) / 1000));
    });
    const bundles = opts.bundles;
    gauge(
      r,
      METRICS.authorityExpiry,
      bundles
        ? function collect() {
            const now = clock.now();
            this.reset();
            for (const b of bundles()) {
              const { x509, jwt } = b.earliestExpiry();
              const td = b.trustDomain.name;
              if (x509 !== undefined) this.set({ trust_domain: td, kind: 'x509' }, (x509 - now) / 1000);
              if (jwt !== undefined) this.set({ trust_domain: td, kind: 'jwt' }, (jwt - now) / 1000);
            }
          }
        : undefined,
    );
    this.#peerState = gauge(r, METRICS.peerState);
    this.#syncTotal = counter(r, METRICS.spireSyncTotal);
    this.#outputFiles = counter(r, METRICS.outputFileWriteTotal);
    this.#outputPass = histogram(r, METRICS.outputPassDuration);
    this.#relayRequests = counter(r, METRICS.relayRequestsTotal);
    this.#oidcRequests = counter(r, METRICS.oidcRequestsTotal);
    this.#syncDuration = histogram(r, METRICS.spireSyncDuration);
    this.#writeTotal = counter(r, METRICS.spireWriteTotal);
    this.#propagation = histogram(r, METRICS.propagation);
    const syncStatus = opts.syncStatus;
    let conflictsGauge: Gauge<string> | undefined;
    this.#drift = gauge(
      r,
      METRICS.driftBundles,
      syncStatus
        ? function collect() {
            this.reset();
            conflictsGauge?.reset();
            for (const s of syncStatus()) {
              this.set({ server: s.name }, s.drift.length);
              conflictsGauge?.set({ server: s.name }, s.conflicts.length);
            }
          }
        : undefined,
    );
    this.#conflicts = gauge(r, METRICS.conflictBundles);
    conflictsGauge = this.#conflicts;
    gauge(
      r,
      METRICS.revocationBlocked,
      syncStatus
        ? function collect() {
            this.reset();
            for (const s of syncStatus()) {
              for (const [td, st] of s.trustDomains ?? []) {
                if (st.error?.code === 'ERR_SPIRE_REVOCATION_BLOCKED')
                  this.set({ server: s.name, trust_domain: td }, st.blockingEntries ?? 1);
              }
            }
          }
        : undefined,
    );
    this.#verifyTotal = counter(r, METRICS.verifyTotal);
    this.#verifyDuration = histogram(r, METRICS.verifyDuration);
    this.#probeSuccess = gauge(r, METRICS.mtlsProbeSuccess);
    this.#probeDuration = gauge(r, METRICS.mtlsProbeDuration);
    this.#probeTotal = counter(r, METRICS.mtlsProbeTotal);
    const held = opts.heldRequests;
    gauge(
      r,
      METRICS.heldRequests,
      held
        ? function collect() {
            this.set(held());
          }
        : undefined,
    );
    const pool = opts.fetchConnections;
    gauge(
      r,
      METRICS.fetchIdleConnections,
      pool
        ? function collect() {
            this.set(pool().idle);
          }
        : undefined,
    );
    gauge(
      r,
      METRICS.fetchIdleConnectionsMax,
      pool
        ? function collect() {
            this.set(pool().max);
          }
        : undefined,
    );
    // A counter kept by the pool itself: mirrored at every scrape (it only grows).
    new Counter({
      name: METRICS.fetchConnectionReuses.name,
      help: METRICS.fetchConnectionReuses.help,
      registers: [r],
      ...(pool
        ? {
            collect(this: Counter<string>) {
              this.reset();
              this.inc(pool().reused);
            },
          }
        : {}),
    });
    this.#reloadSuccess = gauge(r, METRICS.allowlistReloadSuccess);
    this.#reloadTimestamp = gauge(r, METRICS.allowlistReloadTimestamp);
    this.#allowlistPeers = gauge(r, METRICS.allowlistPeers);
    this.#auditFailures = counter(r, METRICS.auditWriteFailures);
  }

  /** Adds Node.js process metrics (`process_*`, `nodejs_*`) to the registry. Call at most once. */
  enableProcessMetrics(): void {
    collectDefaultMetrics({ register: this.registry });
  }

  /** The Prometheus text exposition of every metric, for `/metrics`. */
  async expose(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** One peer bundle fetch attempt ended. `reason` is the ERR_ code of a refusal or failure. */
  observeFetch(o: {
    readonly peer: string;
    readonly result: FetchResult;
    readonly reason?: string;
    readonly durationSeconds: number;
  }): void {
    const total = { peer: o.peer, result: o.result, reason: reasonLabel(o.reason) };
    const duration = { peer: o.peer, result: o.result };
    this.#fetchTotal.inc(total);
    this.#fetchDuration.observe(duration, seconds(o.durationSeconds));
    this.#track(o.peer, METRICS.bundleFetchTotal.name, this.#fetchTotal, total);
    this.#track(o.peer, METRICS.bundleFetchDuration.name, this.#fetchDuration, duration);
  }

  /** Sets the peer's current state to 1 and every other state to 0. */
  setPeerState(trustDomain: string, state: PeerStateName): void {
    if (!PEER_STATES.includes(state)) throw new TypeError(`setPeerState: unknown state ${String(state)}`);
    for (const s of PEER_STATES)
      this.#peerState.set({ trust_domain: trustDomain, state: s }, s === state ? 1 : 0);
  }

  /**
   * The bundle held for `trustDomain`: its sequence, its effective refresh hint, and when its source
   * last confirmed it current (ms since the epoch; call again on every unchanged answer, so
   * `spiffe_broker_bundle_age_seconds` measures staleness). Without `confirmedAt` (a bundle read
   * back after a restart) the age series waits for the source's first confirmation.
   */
  setBundle(
    trustDomain: string,
    b: { readonly sequence: bigint; readonly refreshHintSeconds?: number; readonly confirmedAt?: number },
  ): void {
    this.#sequence.set({ trust_domain: trustDomain }, Number(b.sequence));
    if (b.refreshHintSeconds !== undefined) {
      this.#refreshHint.set({ trust_domain: trustDomain }, b.refreshHintSeconds);
    }
    if (b.confirmedAt !== undefined) this.#confirmedAt.set(trustDomain, b.confirmedAt);
  }

  /** The source confirmed the held bundle is still current (an unchanged answer), at `at` ms. */
  bundleConfirmed(trustDomain: string, at: number): void {
    if (this.#confirmedAt.has(trustDomain)) this.#confirmedAt.set(trustDomain, at);
  }

  /**
   * Forgets every series of a trust domain that left the allowlist, keeping label cardinality
   * bounded by the allowlist in force.
   */
  removePeer(trustDomain: string): void {
    this.#confirmedAt.delete(trustDomain);
    for (const g of [this.#sequence, this.#refreshHint]) g.remove({ trust_domain: trustDomain });
    for (const s of PEER_STATES) this.#peerState.remove({ trust_domain: trustDomain, state: s });
    for (const m of [this.#probeSuccess, this.#probeDuration]) m.remove({ peer: trustDomain });
    for (const { metric, labels } of this.#peerSeries.get(trustDomain)?.values() ?? []) metric.remove(labels);
    this.#peerSeries.delete(trustDomain);
  }

  #track(
    peer: string,
    name: string,
    metric: Counter<string> | Histogram<string>,
    labels: Record<string, string>,
  ): void {
    let series = this.#peerSeries.get(peer);
    if (!series) {
      series = new Map();
      this.#peerSeries.set(peer, series);
    }
    const key = `${name}|${Object.values(labels).join('|')}`;
    if (!series.has(key)) series.set(key, { metric, labels });
  }

  /** One reconcile pass against SPIRE server `server` ended. */
  observeSpireSync(o: {
    readonly server: string;
    readonly result: SpireSyncResult;
    readonly durationSeconds: number;
  }): void {
    this.#syncTotal.inc({ server: o.server, result: o.result });
    this.#syncDuration.observe({ server: o.server }, seconds(o.durationSeconds));
  }

  /** One federated bundle item written to (`set`) or deleted from (`delete`) a SPIRE server. */
  observeSpireWrite(o: {
    readonly server: string;
    readonly operation: 'set' | 'delete';
    readonly ok: boolean;
  }): void {
    this.#writeTotal.inc({ server: o.server, operation: o.operation, result: o.ok ? 'ok' : 'error' });
  }

  /** A file output wrote, removed, or failed to write or remove one file of `format`. */
  observeOutputFile(o: { readonly format: string; readonly result: 'written' | 'removed' | 'error' }): void {
    this.#outputFiles.inc({ format: o.format, result: o.result });
  }

  /** One pass of output `output` (`files`) took `durationSeconds`. */
  observeOutputPass(o: { readonly output: string; readonly durationSeconds: number }): void {
    this.#outputPass.observe({ output: o.output }, seconds(o.durationSeconds));
  }

  /** A request for a relayed peer bundle (`GET /bundles/<td>`) was answered with `result`. */
  observeRelayRequest(result: 'served' | 'not_modified' | 'not_found' | 'too_many'): void {
    this.#relayRequests.inc({ result });
  }

  /** A request to the OIDC discovery listener for `document` was answered with `result`. */
  observeOidcRequest(
    document: 'discovery' | 'jwks' | 'peer_discovery' | 'peer_jwks',
    result: 'served' | 'not_modified' | 'not_found' | 'not_ready',
  ): void {
    this.#oidcRequests.inc({ document, result });
  }

  /** A peer's new sequence reached every target server `seconds` after it was first seen. */
  observePropagation(secondsTaken: number): void {
    this.#propagation.observe(seconds(secondsTaken));
  }

  /** Drift in one server (ignored at scrape time when a `syncStatus` provider is configured). */
  setDrift(server: string, bundles: number): void {
    this.#drift.set({ server }, bundles);
  }

  /** One SVID verification. `trustDomain` must be bounded: a held trust domain or `unknown`. */
  observeVerify(o: {
    readonly trustDomain: string;
    readonly kind: SvidKind;
    readonly result: VerifyResult;
    readonly reason?: string;
    readonly durationSeconds: number;
  }): void {
    this.#verifyTotal.inc({
      trust_domain: o.trustDomain,
      kind: o.kind,
      result: o.result,
      reason: reasonLabel(o.reason),
    });
    this.#verifyDuration.observe({ kind: o.kind }, seconds(o.durationSeconds));
  }

  /** The outcome of one cross-domain mTLS probe of `peer`. */
  setProbe(o: {
    readonly peer: string;
    readonly success: boolean;
    readonly durationSeconds: number;
    readonly reason?: string;
  }): void {
    this.#probeSuccess.set({ peer: o.peer }, o.success ? 1 : 0);
    this.#probeDuration.set({ peer: o.peer }, seconds(o.durationSeconds));
    const total = {
      peer: o.peer,
      result: o.success ? 'ok' : 'failed',
      reason: o.success ? 'none' : reasonLabel(o.reason ?? 'other'),
    };
    this.#probeTotal.inc(total);
    this.#track(o.peer, METRICS.mtlsProbeTotal.name, this.#probeTotal, total);
  }

  /** An allowlist (re)load ended: `ok` with the number of peers in force, or refused. */
  allowlistReloaded(o: { readonly ok: true; readonly peers: number } | { readonly ok: false }): void {
    this.#reloadSuccess.set(o.ok ? 1 : 0);
    if (o.ok) {
      this.#reloadTimestamp.set(this.#clock.now() / 1000);
      this.#allowlistPeers.set(o.peers);
    }
  }

  /** An audit record could not be written. */
  auditWriteFailed(): void {
    this.#auditFailures.inc();
  }

  /**
   * A {@link SpireSyncObserver} that records passes, item writes and deletions, and feeds
   * `propagation` (when given) with every successful write.
   */
  /**
   * The metrics' view of the federation manager: fetch counters and durations, held bundles'
   * sequence and hint, peer states; an accepted bundle starts a propagation measurement.
   */
  federationObserver(propagation?: PropagationTracker): Partial<FederationObserver> {
    return {
      fetched: (peer, result, reason, durationMs) => {
        this.observeFetch({
          peer: peer.trustDomain.name,
          result: result === 'ok' ? 'updated' : result === 'error' ? 'failed' : result,
          reason,
          durationSeconds: durationMs / 1000,
        });
        if (result === 'unchanged') this.bundleConfirmed(peer.trustDomain.name, this.#clock.now());
      },
      accepted: (peer, bundle) => {
        this.setBundle(peer.trustDomain.name, {
          sequence: bundle.sequence,
          refreshHintSeconds: bundle.refreshHint,
          confirmedAt: this.#clock.now(),
        });
        propagation?.seen(bundle);
      },
      // A bundle read back after a restart is held (and pushed to SPIRE) before any fetch: its
      // sequence shows at once (found on a real cluster: a restarted pod exported none).
      restored: (td, bundle) =>
        this.setBundle(td, {
          sequence: bundle.sequence,
          ...(bundle.refreshHint !== undefined ? { refreshHintSeconds: bundle.refreshHint } : {}),
        }),
      stateChanged: (td, _from, to) => this.setPeerState(td, to),
      revoked: (td) => {
        this.removePeer(td);
        propagation?.forget(td);
      },
    };
  }

  spireSyncObserver(propagation?: PropagationTracker): Partial<SpireSyncObserver> {
    return {
      synced: (server, result, durationMs) =>
        this.observeSpireSync({ server, result, durationSeconds: durationMs / 1000 }),
      written: (server, bundle, r: BatchItemResult) => {
        this.observeSpireWrite({ server, operation: 'set', ok: r.ok });
        if (r.ok) propagation?.written(server, bundle);
      },
      deleted: (server, _td, _reason, r) => this.observeSpireWrite({ server, operation: 'delete', ok: r.ok }),
    };
  }
}

interface PendingPropagation {
  readonly bundle: TrustBundle;
  readonly seenAt: number;
  readonly pending: Set<string>;
}

/**
 * Measures propagation: the time from a peer's new bundle first seen (accepted) to it being
 * written to every SPIRE server that should hold it, observed into
 * `spiffe_broker_propagation_seconds`. A newer bundle of the same peer supersedes a pending one (the
 * older never completed). A write matches when it carries the same bundle object, or the same
 * non-zero sequence.
 */
export class PropagationTracker {
  readonly #clock: { now(): number };
  readonly #metrics: Pick<BrokerMetrics, 'observePropagation'>;
  readonly #targets: (trustDomain: string) => readonly string[];
  readonly #pending = new Map<string, PendingPropagation>();

  /** @param targets the servers a trust domain's bundle is written to (from the allowlist entry). */
  constructor(opts: {
    readonly clock: { now(): number };
    readonly metrics: Pick<BrokerMetrics, 'observePropagation'>;
    readonly targets: (trustDomain: string) => readonly string[];
  }) {
    this.#clock = opts.clock;
    this.#metrics = opts.metrics;
    this.#targets = opts.targets;
  }

  /** A new bundle was accepted for its trust domain (call only when it changed). */
  seen(bundle: TrustBundle): void {
    const targets = this.#targets(bundle.trustDomain.name);
    if (targets.length === 0) {
      this.#pending.delete(bundle.trustDomain.name);
      return;
    }
    this.#pending.set(bundle.trustDomain.name, {
      bundle,
      seenAt: this.#clock.now(),
      pending: new Set(targets),
    });
  }

  /** `server` now holds `bundle`. */
  written(server: string, bundle: TrustBundle): void {
    const td = bundle.trustDomain.name;
    const p = this.#pending.get(td);
    if (!p) return;
    const same = p.bundle === bundle || (bundle.sequence !== 0n && bundle.sequence === p.bundle.sequence);
    if (!same || !p.pending.delete(server) || p.pending.size > 0) return;
    this.#pending.delete(td);
    this.#metrics.observePropagation((this.#clock.now() - p.seenAt) / 1000);
  }

  /** Stops tracking a trust domain (peer removed). */
  forget(trustDomain: string): void {
    this.#pending.delete(trustDomain);
  }

  /** Trust domains whose latest bundle has not reached every target yet. */
  pending(): string[] {
    return [...this.#pending.keys()].sort();
  }
}
