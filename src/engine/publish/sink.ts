import type { TrustBundle } from '../../core/bundle/trust-bundle.js';

/**
 * The fan-out contract: every place accepted peer bundles are published to — each SPIRE server
 * ({@link SpireServerSync}), the Kubernetes bundle ConfigMaps (`ConfigMapSink`) — is a Sink.
 * Sinks are level-triggered: `apply` converges the target to the desired set, whatever it held,
 * and reports what it did; calling it again with the same set changes nothing. Each sink runs its
 * own loop (triggers, resync, backoff), so one failing target never blocks another.
 * @module
 */

/** What a sink should publish. */
export interface DesiredBundles {
  /** The bundle each trust domain should have in the target. */
  readonly bundles: ReadonlyMap<string, TrustBundle>;
  /**
   * Allowlisted trust domains with no bundle held (never fetched, state lost): whatever the
   * target holds for them is left as it is — never removed.
   */
  readonly retained: ReadonlySet<string>;
}

/** One trust domain a pass could not converge. */
export interface SinkFailure {
  readonly trustDomain: string;
  readonly code: string;
  readonly message: string;
}

/** What one {@link Sink.apply} did. */
export interface SinkReport {
  /** Every desired bundle is in place and every removal confirmed. */
  readonly ok: boolean;
  /** Trust domains written (created or updated). */
  readonly written: readonly string[];
  /** Trust domains removed (revoked, or no longer wanted in that target). */
  readonly removed: readonly string[];
  readonly failed: readonly SinkFailure[];
}

/** A publication target of the accepted peer bundles. */
export interface Sink {
  /** For status, logs and metrics (a SPIRE server's name, `configmaps`). */
  readonly name: string;
  /** Converges the target to `desired`. Failures are reported, not thrown (it rejects only on abort). */
  apply(desired: DesiredBundles, signal?: AbortSignal): Promise<SinkReport>;
}
