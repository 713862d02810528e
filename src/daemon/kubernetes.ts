import { hostname } from 'node:os';
import { join } from 'node:path';
import { ClusterTrustBundleSink } from '../adapters/k8s/cluster-trust-bundle-sink.js';
import { ConfigMapSink } from '../adapters/k8s/configmap-sink.js';
import { CrdAllowlistSource } from '../adapters/k8s/crd-source.js';
import { ClientNodeKubeApi, type KubeApi } from '../adapters/k8s/kube-api.js';
import { LeaderElector } from '../adapters/k8s/leader-election.js';
import type { PeerStatusSnapshot, StatusSnapshot } from '../adapters/k8s/peer-status.js';
import { DirectoryReferenceStore } from '../adapters/k8s/reference-files.js';
import { type KubernetesSettings, parseKubernetesSettings } from '../adapters/k8s/settings.js';
import type { TrustDomain } from '../core/spiffeid/trust-domain.js';
import type { Allowlist, BrokerConfig } from '../engine/config/types.js';
import type { FederatedBundleStore } from '../engine/federation/bundle-store.js';
import type { PeerStatus } from '../engine/federation/manager.js';
import type { SinkReport } from '../engine/publish/sink.js';
import type { ServerSyncStatus } from '../engine/publish/spire-sync.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';

/** What the Kubernetes integration needs from the daemon. */
export interface KubernetesIntegrationDeps {
  readonly settings: KubernetesSettings;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stateDir: string;
  readonly localTrustDomain: TrustDomain;
  readonly serverNames: readonly string[];
  /** Injected API (tests); default from the settings' credentials. */
  readonly api?: KubeApi;
  /** Hears every ClusterTrustBundle pass's report (metrics, logs). */
  readonly onClusterTrustBundleReport?: (report: SinkReport) => void;
}

const STATE: Record<PeerStatus['state'], PeerStatusSnapshot['state']> = {
  PENDING: 'Pending',
  ACTIVE: 'Ready',
  STALE: 'Stale',
  FAILING: 'Failing',
  // The FederationPeer CRD has no separate state for it: Failing, with the reason's code.
  UNAVAILABLE: 'Failing',
  REVOKED: 'Revoked',
};

/** The FederationPeer status snapshot from the manager's and the SPIRE syncs' status. */
export function statusSnapshot(
  peers: readonly PeerStatus[],
  servers: readonly ServerSyncStatus[],
  targets: (td: string) => readonly string[],
): StatusSnapshot {
  return {
    peers: peers.map((p) => {
      const conflict = servers.some((s) => s.conflicts.includes(p.trustDomain));
      return {
        trustDomain: p.trustDomain,
        state: conflict ? 'Conflict' : STATE[p.state],
        ...(conflict
          ? {
              reason: {
                code: 'ERR_SPIRE_RELATIONSHIP_CONFLICT',
                message: 'a SPIRE server federates with this trust domain through its own relationship',
              },
            }
          : p.reason
            ? { reason: p.reason }
            : {}),
        ...(p.sequence !== undefined ? { sequence: p.sequence } : {}),
        ...(p.lastSuccess !== undefined ? { lastSuccess: p.lastSuccess } : {}),
        servers: targets(p.trustDomain).map((name) => {
          const td = servers.find((s) => s.name === name)?.trustDomains.get(p.trustDomain);
          return {
            name,
            synced: td?.synced ?? false,
            ...(td?.sequence !== undefined ? { sequence: td.sequence } : {}),
            ...(td?.error ? { error: td.error } : {}),
          };
        }),
      };
    }),
  };
}

/**
 * The broker's Kubernetes side, built from the `kubernetes:` config section: the allowlist from
 * FederationPeer (and, optionally, spire-controller-manager ClusterFederatedTrustDomain) objects,
 * Lease leader election, FederationPeer status, per-trust-domain bundle ConfigMaps and
 * ClusterTrustBundles. Every replica reads the allowlist and serves; only the leader writes to
 * SPIRE, ConfigMaps, ClusterTrustBundles and status.
 */
export class KubernetesIntegration {
  readonly api: KubeApi;
  readonly elector: LeaderElector | undefined;
  readonly source: CrdAllowlistSource | undefined;
  /**
   * The ClusterTrustBundle sink (`kubernetes.clusterTrustBundles`), run by the leader; its
   * `status()` is for `/v1/status`. Undefined when not configured.
   */
  readonly clusterTrustBundles: ClusterTrustBundleSink | undefined;
  readonly #deps: KubernetesIntegrationDeps;

  /** {@link statusSnapshot}, for the daemon (which loads this module only when it is needed). */
  statusSnapshot(
    peers: readonly PeerStatus[],
    servers: readonly ServerSyncStatus[],
    targets: (td: string) => readonly string[],
  ): StatusSnapshot {
    return statusSnapshot(peers, servers, targets);
  }

  /** From the broker config's `kubernetes:` section (parsed and checked here). */
  static fromConfig(
    config: BrokerConfig,
    deps: Omit<KubernetesIntegrationDeps, 'settings' | 'stateDir' | 'localTrustDomain'>,
  ): KubernetesIntegration {
    return new KubernetesIntegration({
      ...deps,
      settings: parseKubernetesSettings(config.kubernetes ?? {}),
      stateDir: config.stateDir,
      localTrustDomain: config.trustDomain,
    });
  }

  constructor(deps: KubernetesIntegrationDeps) {
    this.#deps = deps;
    const { settings, clock, logger } = deps;
    this.api = deps.api ?? ClientNodeKubeApi.load(settings.credentials);
    const le = settings.leaderElection;
    this.elector = le
      ? new LeaderElector({
          api: this.api,
          clock,
          logger,
          namespace: le.namespace,
          name: le.leaseName,
          identity: deps.env[le.identityEnv] ?? hostname(),
          leaseDurationMs: le.leaseDurationMs,
          renewDeadlineMs: le.renewDeadlineMs,
          retryPeriodMs: le.retryPeriodMs,
        })
      : undefined;
    this.source = settings.allowlist
      ? new CrdAllowlistSource({
          api: this.api,
          clock,
          logger,
          references: new DirectoryReferenceStore(join(deps.stateDir, 'k8s-references')),
          parse: { localTrustDomain: deps.localTrustDomain, serverNames: deps.serverNames },
          ...(settings.allowlist.clusterFederatedTrustDomains
            ? { clusterFederatedTrustDomains: settings.allowlist.clusterFederatedTrustDomains }
            : {}),
          resyncMs: settings.allowlist.resyncMs,
          canWriteStatus: () => this.isLeader(),
        })
      : undefined;
    const ctb = settings.clusterTrustBundles;
    // One sink for every leadership term (it keeps the status); the feed comes with each run.
    this.clusterTrustBundles = ctb
      ? new ClusterTrustBundleSink({
          api: this.api,
          clock,
          logger,
          signerName: ctb.signerName,
          owner: ctb.owner,
          resyncMs: ctb.resyncMs,
          ...(deps.onClusterTrustBundleReport ? { onReport: deps.onClusterTrustBundleReport } : {}),
        })
      : undefined;
  }

  /** Without leader election this replica always leads (run one replica only). */
  isLeader(): boolean {
    return this.elector?.isLeader() ?? true;
  }

  /** Tasks every replica runs: the election itself and the allowlist source. */
  runShared(signal: AbortSignal): Promise<void>[] {
    return [
      ...(this.elector ? [this.elector.run(signal)] : []),
      ...(this.source ? [this.source.run(signal)] : []),
    ];
  }

  /** The first allowlist from the cluster (resolves once both reflectors synced). */
  waitForAllowlist(signal: AbortSignal): Promise<Allowlist> {
    if (!this.source) throw new TypeError('kubernetes.allowlist is not configured');
    return this.source.waitForAllowlist(signal);
  }

  /**
   * Runs `task` (plus the leader's own Kubernetes writers) only while this replica leads; restarts
   * it on every new term. Resolves when `signal` aborts.
   */
  async runLeaderTasks(
    signal: AbortSignal,
    hooks: {
      readonly feed: FederatedBundleStore;
      readonly snapshot: () => StatusSnapshot;
      readonly task: (leaderSignal: AbortSignal) => Promise<void>;
    },
  ): Promise<void> {
    const { settings, clock, logger } = this.#deps;
    const leaderWork = async (leaderSignal: AbortSignal): Promise<void> => {
      logger.info('leading: writing to SPIRE and Kubernetes');
      const work: Promise<void>[] = [hooks.task(leaderSignal)];
      if (settings.bundleConfigMaps) {
        const sink = new ConfigMapSink({
          api: this.api,
          clock,
          logger,
          feed: hooks.feed,
          namespaceSelector: settings.bundleConfigMaps.namespaceSelector,
          owner: settings.bundleConfigMaps.owner,
          resyncMs: settings.bundleConfigMaps.resyncMs,
        });
        work.push(sink.run(leaderSignal));
      }
      if (this.clusterTrustBundles) work.push(this.clusterTrustBundles.run(leaderSignal, hooks.feed));
      if (settings.statusUpdates && this.source) {
        const writer = this.source.statusWriter;
        work.push(
          (async () => {
            while (!leaderSignal.aborted) {
              await writer.write(hooks.snapshot()).catch((err: unknown) =>
                logger.warn('FederationPeer status write failed', {
                  error: err instanceof Error ? err.message : String(err),
                }),
              );
              await clock.sleep(5_000, leaderSignal).catch(() => undefined);
            }
          })(),
        );
      }
      await Promise.all(work);
      logger.info('no longer leading');
    };
    if (this.elector) await this.elector.runWhileLeader(signal, leaderWork);
    else await leaderWork(signal);
  }
}
