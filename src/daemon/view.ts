import {
  type BrokerStatus,
  brokerStatusFrom,
  type OutputsStatus,
  type ReconcileDiff,
  readinessFrom,
  toRfc3339,
} from '../adapters/admin/status.js';
import type { AuditTrail } from '../adapters/audit/audit-trail.js';
import type { LocalBundle } from '../adapters/endpoint/local-bundle.js';
import type { BundleSource } from '../core/bundle/source.js';
import type { TrustBundle } from '../core/bundle/trust-bundle.js';
import { requireAllowlisted } from '../core/policy/evaluate.js';
import type { TrustDomain } from '../core/spiffeid/trust-domain.js';
import type { BrokerConfig } from '../engine/config/types.js';
import type { FederatedBundleStore } from '../engine/federation/bundle-store.js';
import type { FederationManager, PeerStatus } from '../engine/federation/manager.js';
import { serverDiff } from '../engine/publish/diff-report.js';
import type { PublishRouting } from '../engine/publish/routing.js';
import type { ServerSyncStatus, SpireServerSync } from '../engine/publish/spire-sync.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import type { AllowlistControl } from './allowlist-control.js';
import type { Readiness } from './deps.js';

/** The parts of a running broker the view reads (the daemon's). */
export interface BrokerParts {
  readonly config: BrokerConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly manager: FederationManager;
  readonly store: FederatedBundleStore;
  readonly syncs: ReadonlyMap<string, SpireServerSync>;
  readonly routing: PublishRouting;
  readonly localBundle: LocalBundle;
  readonly allowlist: AllowlistControl;
  readonly audit: () => AuditTrail | undefined;
  /** `[server, trust domain]` of last-known-good bundles loaded at start, until seen in SPIRE. */
  readonly mustPush: Set<string>;
  readonly isLeader: () => boolean;
  /** The hub outputs' status (`outputs:`; e.g. `{ files: fileOutputs.status() }`), when any is configured. */
  readonly outputs?: () => OutputsStatus;
}

/**
 * What operators and the admin API see of a broker, and the two things they may do: status,
 * readiness, diff, the held bundles; reset a peer's sequence baseline, reconcile now. Reads the
 * daemon's parts; holds nothing of its own.
 */
export class BrokerView {
  readonly #p: BrokerParts;

  constructor(parts: BrokerParts) {
    this.#p = parts;
  }

  /** The bundles SPIRE server `name` should hold (see {@link PublishRouting.desiredFor}). */
  desiredFor(name: string): Map<string, TrustBundle> {
    return this.#p.routing.desiredFor(name);
  }

  /** The SPIRE servers a peer's bundle is written to. */
  targetsOf(trustDomain: string): string[] {
    return this.#p.routing.targetsOf(trustDomain);
  }

  /** The local bundle (as published) and every federated bundle held. */
  allBundles(): TrustBundle[] {
    const local = this.#p.localBundle.current()?.bundle;
    return local ? [local, ...this.#p.store.bundles()] : this.#p.store.bundles();
  }

  /** A {@link BundleSource} of the local bundle and every federated bundle held (verify API, probe). */
  bundleSource(): BundleSource {
    const { config, localBundle, store } = this.#p;
    return {
      getBundleForTrustDomain: (td) =>
        td.equals(config.trustDomain) ? localBundle.current()?.bundle : store.getBundleForTrustDomain(td),
    };
  }

  /** Whether this replica leads (always, without Kubernetes leader election). */
  isLeader(): boolean {
    return this.#p.isLeader();
  }

  peerStatus(): PeerStatus[] {
    return this.#p.manager.status();
  }

  serverStatus(): ServerSyncStatus[] {
    return [...this.#p.syncs.values()].map((s) => s.status());
  }

  /** The `/v1/status` document. */
  status(): BrokerStatus {
    const { config, manager, store, routing, clock } = this.#p;
    return {
      ...brokerStatusFrom({
        trustDomain: config.trustDomain.name,
        peers: manager.status(),
        servers: this.serverStatus(),
        bundle: (td) => store.get(td),
        targetServers: (td) => routing.targetsOf(td),
        now: clock.now(),
      }),
      allowlist: this.#p.allowlist.status(),
      ...(this.#p.outputs ? { outputs: this.#p.outputs() } : {}),
    };
  }

  /**
   * Ready when the allowlist is loaded and, on the leader, every last-known-good bundle has reached
   * every targeted server and no revocation is blocked (a follower serves but does not write).
   */
  readiness(): Readiness {
    const { reasons, satisfied } = readinessFrom({
      allowlistLoaded: this.#p.allowlist.loaded,
      leader: this.#p.isLeader(),
      servers: this.serverStatus(),
      mustPush: [...this.#p.mustPush].map((k) => k.split('/') as [string, string]),
      targetsOf: (td) => this.#p.routing.targetsOf(td),
    });
    for (const [server, td] of satisfied) this.#p.mustPush.delete(`${server}/${td}`);
    return { ready: reasons.length === 0, reasons };
  }

  /** What a reconcile would change in every SPIRE server, changing nothing (`spiffe-broker diff`). */
  async diff(): Promise<ReconcileDiff> {
    const { config, clock, syncs } = this.#p;
    const enforce = config.reconcile.enforce;
    return {
      trustDomain: config.trustDomain.name,
      generatedAt: toRfc3339(clock.now())!,
      enforce,
      servers: await Promise.all([...syncs.values()].map((s) => serverDiff(s, enforce))),
    };
  }

  /**
   * An operator's explicit reset of a peer's `spiffe_sequence` baseline (the peer rebuilt its trust
   * domain and restarted its sequence): see {@link FederationManager.resetSequence}; audited.
   * @throws PolicyError `ERR_POLICY_NOT_ALLOWLISTED`
   */
  async resetSequence(
    trustDomain: TrustDomain,
    operator?: string,
  ): Promise<{ previousSequence: string | null }> {
    const { manager, store, logger } = this.#p;
    requireAllowlisted(manager.peers(), trustDomain);
    const previous = store.get(trustDomain.name)?.sequence;
    await manager.resetSequence(trustDomain.name);
    await this.#p
      .audit()
      ?.sequenceReset({ trustDomain, previousSequence: previous ?? 0n, ...(operator ? { operator } : {}) });
    logger.warn('sequence baseline reset by an operator', {
      trustDomain: trustDomain.name,
      previousSequence: previous,
    });
    return { previousSequence: previous === undefined ? null : previous.toString() };
  }

  /** Reconciles every SPIRE server now; resolves when each has finished one fresh pass (30 s at most). */
  async reconcileNow(): Promise<void> {
    const { syncs, clock } = this.#p;
    await Promise.all([...syncs.values()].map((s) => Promise.race([s.reconcileSoon(), clock.sleep(30_000)])));
  }
}
