import { readFile, stat } from 'node:fs/promises';
import { AuditTrail } from '../adapters/audit/audit-trail.js';
import { AuditWriter } from '../adapters/audit/writer.js';
import { LocalBundle } from '../adapters/endpoint/local-bundle.js';
import type { RunningBundleEndpoint } from '../adapters/endpoint/server.js';
import {
  BrokerMetrics,
  createMetricsRegistry,
  PropagationTracker,
} from '../adapters/metrics/broker-metrics.js';
import type { SpireServerClient } from '../adapters/spire/client.js';
import { TrustDomain } from '../core/spiffeid/trust-domain.js';
import type { AllowlistWatcher } from '../engine/config/allowlist-watcher.js';
import { assertReferencedFiles } from '../engine/config/referenced-files.js';
import type { Allowlist, BrokerConfig } from '../engine/config/types.js';
import { FederatedBundleStore } from '../engine/federation/bundle-store.js';
import { IdleConnections } from '../engine/federation/idle-connections.js';
import { FederationManager } from '../engine/federation/manager.js';
import { ConfiguredPeerFetcher } from '../engine/federation/peer-fetcher.js';
import { restoredFromState, restorePeers } from '../engine/federation/restore.js';
import { nodeStateFs, StateStore } from '../engine/federation/state-store.js';
import { FileManagedSetStore } from '../engine/publish/managed-set-store.js';
import { PublishRouting } from '../engine/publish/routing.js';
import type { SpireServerSync } from '../engine/publish/spire-sync.js';
import { createSpireSyncs } from '../engine/publish/spire-syncs.js';
import { BrokerError } from '../errors.js';
import { type Clock, systemClock } from '../platform/clock.js';
import { type Logger, nullLogger } from '../platform/logger.js';
import { runTasks, type Task, type TaskFailure } from '../platform/tasks.js';
import { AllowlistControl } from './allowlist-control.js';
import type { KubernetesIntegration } from './kubernetes.js';
import { BrokerView } from './view.js';

export type { DaemonDeps, Readiness } from './deps.js';

import type { DaemonDeps } from './deps.js';
import { listenerTasks } from './listeners.js';
import { brokerObservers } from './observers.js';
import { hubOutputs } from './outputs.js';
import { createSpireClients } from './spire-clients.js';
import { takeStateDir } from './state-dir-guard.js';
import { BROKER_VERSION } from './version.js';

/**
 * The composition root: builds every part of a broker from its configuration and runs them as one
 * task group; no logic of its own (docs/design.md, "Layers" and "The path of a bundle").
 */
export class BrokerDaemon {
  readonly config: BrokerConfig;
  readonly store = new FederatedBundleStore();
  readonly clock: Clock;
  readonly logger: Logger;
  readonly manager: FederationManager;
  readonly routing: PublishRouting;
  readonly syncs: ReadonlyMap<string, SpireServerSync>;
  readonly clients: ReadonlyMap<string, SpireServerClient>;
  readonly stateStore: StateStore;
  /** The local bundle as published. */
  readonly localBundle: LocalBundle;
  /** The broker's metrics (a fresh registry per daemon). */
  readonly metrics: BrokerMetrics;
  readonly #read: (p: string) => Promise<Uint8Array>;
  readonly #deps: DaemonDeps;
  readonly #endpointReady: Promise<RunningBundleEndpoint>;
  #resolveEndpoint: (ep: RunningBundleEndpoint) => void = () => undefined;
  #endpoint: RunningBundleEndpoint | undefined;
  readonly #allowlist: AllowlistControl;
  /** Status, readiness, diff and the operator actions (the admin API's providers). */
  readonly view: BrokerView;
  #audit: AuditTrail | undefined;
  #k8s: KubernetesIntegration | undefined;
  #adminToken: string | undefined;
  /** Where the admin, verify and OIDC listeners listen, once they do. */
  readonly #urls: { admin?: string; verify?: string; oidc?: string } = {};
  readonly #outputTasks: readonly Task[];
  /** `server/trust domain` of last-known-good bundles loaded at start, until written to SPIRE. */
  readonly #mustPush = new Set<string>();
  /** Kept-alive bundle endpoint connections between polls (broker.yaml `fetch.keepAlive`). */
  readonly #connections: IdleConnections;

  private constructor(config: BrokerConfig, deps: DaemonDeps, clients: Map<string, SpireServerClient>) {
    this.config = config;
    this.#deps = deps;
    this.clock = deps.clock ?? systemClock;
    this.logger = deps.logger ?? nullLogger;
    this.#read = deps.readFile ?? (async (p) => new Uint8Array(await readFile(p)));
    this.clients = clients;
    this.#connections = new IdleConnections({ ...config.fetch.keepAlive, clock: this.clock });
    const { clock, logger: log, store } = this;
    const now = () => clock.now();
    // Stored bundles are re-parsed with the same limits as fetched ones: a default-sized parser
    // would quarantine every bundle accepted under a raised fetch.maxBodyBytes at each restart.
    this.stateStore = new StateStore(
      { dir: config.stateDir, parse: { maxBytes: config.fetch.maxBodyBytes } },
      { fs: deps.stateFs ?? nodeStateFs, now },
    );
    this.metrics = new BrokerMetrics({
      registry: createMetricsRegistry(),
      clock,
      bundles: () => this.view.allBundles(),
      heldRequests: () => this.#endpoint?.app.bundleEndpoint.heldRequests() ?? 0,
      fetchConnections: () => ({
        idle: this.#connections.size,
        max: this.#connections.enabled ? this.#connections.maxIdle : 0,
        reused: this.#connections.reused,
      }),
      syncStatus: () => this.view.serverStatus(),
      build: { version: BROKER_VERSION, nodeVersion: process.version },
    });
    const propagation = new PropagationTracker({
      clock,
      metrics: this.metrics,
      targets: (td) => this.routing.targetsOf(td),
    });
    const observers = brokerObservers({
      logger: log,
      now,
      metrics: this.metrics,
      propagation,
      audit: () => this.#audit,
      enforce: config.reconcile.enforce,
      extraFederation: deps.federationObserver,
      extraSync: deps.syncObserver,
    });
    this.manager = new FederationManager({
      clock,
      fetcher: new ConfiguredPeerFetcher({
        clock,
        readFile: this.#read,
        bundles: store,
        limits: config.fetch,
        fetchDeps: { connections: this.#connections, ...deps.fetchDeps },
      }),
      store,
      persist: async (bundle, meta) => void (await this.stateStore.saveAccepted(bundle, meta)),
      forget: (td) => this.stateStore.remove(TrustDomain.parse(td)),
      persistReset: async (td) => void (await this.stateStore.resetSequence(TrustDomain.parse(td))),
      ...(deps.random ? { random: deps.random } : {}),
      logger: log,
      observer: observers.federation,
    });
    this.#allowlist = new AllowlistControl({
      manager: this.manager,
      metrics: this.metrics,
      logger: log,
      clock,
      audit: () => this.#audit,
      connections: this.#connections,
    });
    this.routing = new PublishRouting({
      peers: () => this.manager.peers(),
      peer: (td) => this.manager.peer(td),
      bundle: (td) => store.get(td),
      servers: () => [...clients.keys()],
    });
    this.syncs = createSpireSyncs({
      clients,
      routing: this.routing,
      managed: new FileManagedSetStore(this.stateStore),
      clock,
      reconcile: config.reconcile,
      observer: observers.sync,
      settling: () => this.manager.awaitingFirstOutcome() > 0,
    });
    this.localBundle = new LocalBundle({
      source: this.sourceClient(),
      trustDomain: config.trustDomain,
      ...(config.endpoint && { pollIntervalMs: config.endpoint.pollIntervalMs }),
      ...(config.endpoint && { refreshHintSeconds: config.endpoint.refreshHintSeconds }),
      deps: { clock, logger: log },
    });
    const outputs = hubOutputs(config, {
      store,
      localBundle: this.localBundle,
      peers: () => this.manager.peers(),
      metrics: this.metrics,
      logger: log,
      clock,
      oidcUrl: () => this.#urls.oidc,
      endpointUrl: () => this.#endpoint?.url,
      clusterTrustBundles: () => this.#k8s?.clusterTrustBundles,
    });
    this.#outputTasks = outputs.tasks;
    this.view = new BrokerView({
      outputs: () => outputs.status(),
      config,
      clock,
      logger: log,
      manager: this.manager,
      store,
      syncs: this.syncs,
      routing: this.routing,
      localBundle: this.localBundle,
      allowlist: this.#allowlist,
      audit: () => this.#audit,
      mustPush: this.#mustPush,
      isLeader: () => this.#k8s?.isLeader() ?? true,
    });
    this.#endpointReady = new Promise((r) => {
      this.#resolveEndpoint = (ep) => {
        this.#endpoint = ep;
        r(ep);
      };
    });
    // Every change of the held bundles is a reason for every server to reconcile.
    store.subscribe(() => {
      for (const s of this.syncs.values()) s.trigger();
    });
  }

  /** Builds a daemon (SPIRE clients connect lazily: nothing happens until {@link run}). */
  static async create(config: BrokerConfig, deps: DaemonDeps = {}): Promise<BrokerDaemon> {
    const read = deps.readFile ?? (async (p: string) => new Uint8Array(await readFile(p)));
    // Every file the config names is opened and parsed before anything starts (ERR_CONFIG_FILE at
    // the key's line); the allowlist's own files are checked by the watcher at every load.
    await assertReferencedFiles(
      { kind: 'BrokerConfig', config },
      { readFile: read },
      { followAllowlist: false },
    );
    const clients = await createSpireClients(
      config.spire.servers,
      config.trustDomain,
      read,
      deps.spireClient,
    );
    return new BrokerDaemon(config, deps, clients);
  }

  /** The source SPIRE server's client (whose bundle the endpoint publishes). */
  sourceClient(): SpireServerClient {
    const c = this.clients.get(this.config.spire.source);
    if (!c) throw new TypeError(`no SPIRE server named "${this.config.spire.source}"`);
    return c;
  }

  /** The bundle endpoint once it listens (its URL and port), when one is configured. */
  endpoint(): Promise<RunningBundleEndpoint> {
    if (!this.config.endpoint) return Promise.reject(new TypeError('no bundle endpoint configured'));
    return this.#endpointReady;
  }

  get endpointUrl(): string | undefined {
    return this.#endpoint?.url;
  }

  /** `http://host:port` of the admin API once it listens (undefined until then). */
  get adminUrl(): string | undefined {
    return this.#urls.admin;
  }

  /** `http://host:port` of the verify API once it listens. */
  get verifyUrl(): string | undefined {
    return this.#urls.verify;
  }

  /**
   * Takes the state directory (permissions, exclusive lock), loads the allowlist and the
   * last-known-good bundles, then runs every part — bundle endpoint, admin, verify and health
   * listeners, federation manager, SPIRE syncs, allowlist watcher, Kubernetes — as one task group
   * until `signal` aborts. When any part fails (a listener that cannot bind, a sync that throws)
   * the others are stopped and awaited, the audit trail is closed last, and the error is rethrown
   * with its code: the broker never runs half-dead. Last-known-good bundles are in the store — and
   * so on their way to SPIRE — before the first fetch completes.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { lock, adminToken } = await takeStateDir(
      this.config.stateDir,
      this.config.audit.keyFile,
      () => this.stateStore.ensureDir(),
      this.logger,
    );
    this.#adminToken = adminToken;
    // Kubernetes: the allowlist from FederationPeer objects, leader election, ConfigMaps, status.
    // Loaded only when configured: @kubernetes/client-node alone is ~30 MiB of heap (module
    // source and code) that a broker outside Kubernetes would carry, and the GC would mark, forever.
    const k8s = this.config.kubernetes
      ? (await import('./kubernetes.js')).KubernetesIntegration.fromConfig(this.config, {
          clock: this.clock,
          logger: this.logger,
          env: this.#deps.env ?? process.env,
          serverNames: [...this.clients.keys()],
          ...(this.#deps.kubeApi ? { api: this.#deps.kubeApi } : {}),
        })
      : undefined;
    this.#k8s = k8s;
    const tasks: Task[] = [
      { name: 'state lock', run: (sig) => lock.hold(sig) },
      ...(k8s
        ? [
            {
              name: 'kubernetes',
              run: async (sig: AbortSignal) => void (await Promise.all(k8s.runShared(sig))),
            },
          ]
        : []),
      { name: 'broker', run: (sig) => this.#runBroker(sig, k8s) },
    ];
    try {
      await runTasks(
        tasks,
        signal,
        (f) => {
          const code = f.error instanceof BrokerError ? f.error.code : undefined;
          this.logger.error('broker stopping: a part failed', { task: f.task, code, error: f.message });
        },
        this.#stopping,
      );
    } finally {
      for (const c of this.clients.values()) c.close();
      this.#connections.close();
      await lock.release();
    }
  }

  readonly #stopping = (f: TaskFailure): void =>
    this.logger.warn('error while stopping', { task: f.task, error: f.message });

  /** Loads allowlist and state, then runs every part of the broker as one task group. */
  async #runBroker(signal: AbortSignal, k8s: KubernetesIntegration | undefined): Promise<void> {
    // With the real file system a poll stats the file and reads it only when it changed.
    const watcher = this.#allowlist.watcher(
      this.config,
      this.#read,
      [...this.clients.keys()],
      this.#deps.readFile ? undefined : (p) => stat(p),
    );
    let allowlist: Allowlist;
    if (k8s?.source) {
      allowlist = await k8s.waitForAllowlist(signal);
      k8s.source.subscribe((next) => void this.#allowlist.apply(next));
    } else {
      allowlist = await watcher.load();
    }
    await this.stateStore.init();
    const writer = await AuditWriter.open(
      { file: this.config.audit.file, keyFile: this.config.audit.keyFile, fsync: this.config.audit.fsync },
      { now: () => this.clock.now(), ...(this.#deps.auditFs ? { fs: this.#deps.auditFs } : {}) },
    );
    try {
      this.#audit = new AuditTrail(writer);
      const restored = await restorePeers({
        state: this.stateStore,
        allowlist,
        spire: this.clients,
        source: this.config.spire.source,
        logger: this.logger,
        signal,
      });
      this.manager.restore(restored);
      for (const key of restoredFromState(restored, this.clients.keys())) this.#mustPush.add(key);
      await this.#allowlist.apply(allowlist);
      await runTasks(this.#parts(k8s, watcher), signal, undefined, this.#stopping);
    } finally {
      // Every part has returned: nothing can be accepted (or audited) after this point.
      this.#audit = undefined;
      await writer.close().catch(() => undefined);
    }
  }

  /** The long-running parts of a started broker. */
  #parts(k8s: KubernetesIntegration | undefined, watcher: AllowlistWatcher): Task[] {
    return [
      { name: 'local bundle', run: (sig) => this.localBundle.run(sig) },
      ...listenerTasks(
        {
          config: this.config,
          clock: this.clock,
          logger: this.logger,
          metrics: this.metrics,
          readFile: this.#read,
          source: this.sourceClient(),
        },
        {
          local: this.localBundle,
          federated: this.store,
          held: this.view.bundleSource(),
          peers: () => this.manager.peers(),
          clients: this.clients,
          admin: {
            status: () => this.view.status(),
            ready: () => this.view.readiness(),
            bundles: () => this.view.allBundles(),
            diff: () => this.view.diff(),
            reconcile: () => this.view.reconcileNow(),
            resetSequence: (td) => this.view.resetSequence(td, 'admin API'),
            ...(this.#adminToken ? { adminToken: this.#adminToken } : {}),
          },
          listening: (what, address, endpoint) => {
            if (what !== 'endpoint') this.#urls[what] = address;
            else if (endpoint) this.#resolveEndpoint(endpoint);
          },
        },
      ),
      { name: 'federation', run: (sig) => this.manager.run(sig) },
      // Every replica writes its own local output files (not leader-gated).
      ...this.#outputTasks,
      ...(k8s?.source ? [] : [{ name: 'allowlist watcher', run: (sig: AbortSignal) => watcher.run(sig) }]),
      {
        name: 'SPIRE sync',
        // Only the leader writes to SPIRE (and, on Kubernetes, to ConfigMaps and status).
        run: (sig) =>
          k8s
            ? k8s.runLeaderTasks(sig, {
                feed: this.store,
                snapshot: () =>
                  k8s.statusSnapshot(this.manager.status(), this.view.serverStatus(), (td) =>
                    this.routing.targetsOf(td),
                  ),
                task: (leader) => this.#runSyncs(leader),
              })
            : this.#runSyncs(sig),
      },
    ];
  }

  async #runSyncs(signal: AbortSignal): Promise<void> {
    await Promise.all([...this.syncs.values()].map((s) => s.run(signal)));
  }
}
