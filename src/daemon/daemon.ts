import { readFile } from 'node:fs/promises';
import {
  type BrokerStatus,
  brokerStatusFrom,
  type ReconcileDiff,
  readinessFrom,
  toRfc3339,
} from '../adapters/admin/status.js';
import { AuditTrail } from '../adapters/audit/audit-trail.js';
import { auditObservers } from '../adapters/audit/observers.js';
import { AuditWriter } from '../adapters/audit/writer.js';
import { LocalBundle } from '../adapters/endpoint/local-bundle.js';
import type { RunningBundleEndpoint } from '../adapters/endpoint/server.js';
import {
  BrokerMetrics,
  createMetricsRegistry,
  PropagationTracker,
} from '../adapters/metrics/broker-metrics.js';
import type { SpireServerClient } from '../adapters/spire/client.js';
import type { BundleSource } from '../core/bundle/source.js';
import type { TrustBundle } from '../core/bundle/trust-bundle.js';
import { requireAllowlisted } from '../core/policy/evaluate.js';
import { TrustDomain } from '../core/spiffeid/trust-domain.js';
import { AllowlistWatcher } from '../engine/config/allowlist-watcher.js';
import { assertReferencedFiles } from '../engine/config/referenced-files.js';
import type { Allowlist, BrokerConfig } from '../engine/config/types.js';
import { FederatedBundleStore } from '../engine/federation/bundle-store.js';
import { FederationManager, type FederationObserver, type PeerStatus } from '../engine/federation/manager.js';
import { ConfiguredPeerFetcher } from '../engine/federation/peer-fetcher.js';
import { restoredFromState, restorePeers } from '../engine/federation/restore.js';
import { nodeStateFs, StateStore } from '../engine/federation/state-store.js';
import { serverDiff } from '../engine/publish/diff-report.js';
import { FileManagedSetStore } from '../engine/publish/managed-set-store.js';
import { PublishRouting } from '../engine/publish/routing.js';
import type { ServerSyncStatus, SpireServerSync, SpireSyncObserver } from '../engine/publish/spire-sync.js';
import { createSpireSyncs } from '../engine/publish/spire-syncs.js';
import { BrokerError } from '../errors.js';
import { type Clock, systemClock } from '../platform/clock.js';
import { type Logger, nullLogger } from '../platform/logger.js';
import { composeObservers } from '../platform/observers.js';
import { runTasks, type Task } from '../platform/tasks.js';
import { KubernetesIntegration, statusSnapshot } from './kubernetes.js';

export type { DaemonDeps, Readiness } from './deps.js';

import type { DaemonDeps, Readiness } from './deps.js';
import { listenerTasks } from './listeners.js';
import { logObservers } from './log-observers.js';
import { createSpireClients } from './spire-clients.js';
import { takeStateDir } from './state-dir-guard.js';
import { BROKER_VERSION } from './version.js';

/**
 * The composition root: builds every part of a broker from its configuration and runs them as
 * one task group. No logic of its own: fetching and acceptance live in federation/ (fetcher,
 * manager, restore), routing and SPIRE writes in publish/, listeners in ./listeners.ts, the
 * observers in audit/, metrics/ and ./log-observers.ts. A bundle's path: ConfiguredPeerFetcher →
 * PeerUpdater → FederationManager (policy, persist) → FederatedBundleStore → (trigger) →
 * SpireServerSync ← PublishRouting.desiredFor → BatchSetFederatedBundle.
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
  #allowlistLoaded = false;
  #allowlistRefused: { code: string; message: string; at: number } | undefined;
  #audit: AuditTrail | undefined;
  #k8s: KubernetesIntegration | undefined;
  #adminToken: string | undefined;
  #adminUrl: string | undefined;
  #verifyUrl: string | undefined;
  /** `server/trust domain` of last-known-good bundles loaded at start, until written to SPIRE. */
  readonly #mustPush = new Set<string>();

  private constructor(config: BrokerConfig, deps: DaemonDeps, clients: Map<string, SpireServerClient>) {
    this.config = config;
    this.#deps = deps;
    this.clock = deps.clock ?? systemClock;
    this.logger = deps.logger ?? nullLogger;
    this.#read = deps.readFile ?? (async (p) => new Uint8Array(await readFile(p)));
    this.clients = clients;
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
      bundles: () => this.#allBundles(),
      heldRequests: () => this.#endpoint?.app.bundleEndpoint.heldRequests() ?? 0,
      syncStatus: () => this.serverStatus(),
      build: { version: BROKER_VERSION, nodeVersion: process.version },
    });
    const propagation = new PropagationTracker({
      clock,
      metrics: this.metrics,
      targets: (td) => this.routing.targetsOf(td),
    });
    const logs = logObservers(log, now);
    const audit = auditObservers({
      trail: () => this.#audit,
      enforce: config.reconcile.enforce,
      now,
      onWriteFailure: (record, err) => {
        this.metrics.auditWriteFailed();
        log.error('audit write failed', { record, error: err instanceof Error ? err.message : String(err) });
      },
    });
    const observerFailed = (err: unknown, event: string) =>
      log.error('observer failed', { event, error: String(err) });

    this.manager = new FederationManager({
      clock,
      fetcher: new ConfiguredPeerFetcher({
        clock,
        readFile: this.#read,
        bundles: store,
        limits: config.fetch,
        ...(deps.fetchDeps ? { fetchDeps: deps.fetchDeps } : {}),
      }),
      store,
      persist: async (bundle, meta) => void (await this.stateStore.saveAccepted(bundle, meta)),
      forget: (td) => this.stateStore.remove(TrustDomain.parse(td)),
      persistReset: async (td) => void (await this.stateStore.resetSequence(TrustDomain.parse(td))),
      ...(deps.random ? { random: deps.random } : {}),
      logger: log,
      observer: composeObservers<FederationObserver>(
        [
          logs.federation,
          audit.federation,
          this.metrics.federationObserver(propagation),
          deps.federationObserver,
        ],
        observerFailed,
      ),
    });
    this.routing = new PublishRouting({
      peers: () => this.manager.peers(),
      bundle: (td) => store.get(td),
      servers: () => [...clients.keys()],
    });
    const syncs = createSpireSyncs({
      clients,
      routing: this.routing,
      managed: new FileManagedSetStore(this.stateStore),
      clock,
      reconcile: config.reconcile,
      observer: composeObservers<SpireSyncObserver>(
        [logs.sync, audit.sync, this.metrics.spireSyncObserver(propagation), deps.syncObserver],
        observerFailed,
      ),
    });
    this.syncs = syncs;
    this.localBundle = new LocalBundle({
      source: this.sourceClient(),
      trustDomain: config.trustDomain,
      ...(config.endpoint
        ? {
            pollIntervalMs: config.endpoint.pollIntervalMs,
            refreshHintSeconds: config.endpoint.refreshHintSeconds,
          }
        : {}),
      deps: { clock, logger: log },
    });
    this.#endpointReady = new Promise((r) => {
      this.#resolveEndpoint = r;
    });
    // Every change of the held bundles is a reason for every server to reconcile.
    store.subscribe(() => {
      for (const s of syncs.values()) s.trigger();
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

  /** The bundles SPIRE server `name` should hold (see {@link PublishRouting.desiredFor}). */
  desiredFor(name: string): Map<string, TrustBundle> {
    return this.routing.desiredFor(name);
  }

  /** The SPIRE servers a peer's bundle is written to. */
  targetsOf(trustDomain: string): string[] {
    return this.routing.targetsOf(trustDomain);
  }

  /** The local bundle (as published) and every federated bundle held. */
  #allBundles(): TrustBundle[] {
    const local = this.localBundle.current()?.bundle;
    return local ? [local, ...this.store.bundles()] : this.store.bundles();
  }

  /** A {@link BundleSource} of the local bundle and every federated bundle held (verify API). */
  bundleSource(): BundleSource {
    return {
      getBundleForTrustDomain: (td) =>
        td.equals(this.config.trustDomain)
          ? this.localBundle.current()?.bundle
          : this.store.getBundleForTrustDomain(td),
    };
  }

  /** The `/v1/status` document. */
  status(): BrokerStatus {
    const refused = this.#allowlistRefused;
    return {
      ...brokerStatusFrom({
        trustDomain: this.config.trustDomain.name,
        peers: this.manager.status(),
        servers: this.serverStatus(),
        bundle: (td) => this.store.get(td),
        targetServers: (td) => this.routing.targetsOf(td),
        now: this.clock.now(),
      }),
      allowlist: {
        version: this.manager.allowlist?.version ?? null,
        refused: refused
          ? { code: refused.code, message: refused.message, at: toRfc3339(refused.at)! }
          : null,
      },
    };
  }

  /** What a reconcile would change in every SPIRE server, changing nothing (`spiffe-broker diff`). */
  async diff(): Promise<ReconcileDiff> {
    const enforce = this.config.reconcile.enforce;
    return {
      trustDomain: this.config.trustDomain.name,
      generatedAt: toRfc3339(this.clock.now())!,
      enforce,
      servers: await Promise.all([...this.syncs.values()].map((s) => serverDiff(s, enforce))),
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
    requireAllowlisted(this.manager.peers(), trustDomain);
    const previous = this.store.get(trustDomain.name)?.sequence;
    await this.manager.resetSequence(trustDomain.name);
    await this.#audit?.sequenceReset({
      trustDomain,
      previousSequence: previous ?? 0n,
      ...(operator ? { operator } : {}),
    });
    this.logger.warn('sequence baseline reset by an operator', {
      trustDomain: trustDomain.name,
      previousSequence: previous,
    });
    return { previousSequence: previous === undefined ? null : previous.toString() };
  }

  /** Reconciles every SPIRE server now; resolves when each has finished one fresh pass (30 s at most). */
  async reconcileNow(): Promise<void> {
    await Promise.all(
      [...this.syncs.values()].map((s) => Promise.race([s.reconcileSoon(), this.clock.sleep(30_000)])),
    );
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
    return this.#adminUrl;
  }

  /** `http://host:port` of the verify API once it listens. */
  get verifyUrl(): string | undefined {
    return this.#verifyUrl;
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
    const k8s = this.config.kubernetes
      ? KubernetesIntegration.fromConfig(this.config, {
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
        (f) => this.logger.warn('error while stopping', { task: f.task, error: f.message }),
      );
    } finally {
      for (const c of this.clients.values()) c.close();
      await lock.release();
    }
  }

  /** Loads allowlist and state, then runs every part of the broker as one task group. */
  async #runBroker(signal: AbortSignal, k8s: KubernetesIntegration | undefined): Promise<void> {
    const watcher = new AllowlistWatcher(
      {
        path: this.config.allowlist.file,
        parseOptions: { localTrustDomain: this.config.trustDomain, serverNames: [...this.clients.keys()] },
        referencedFiles: { readFile: this.#read },
        onChange: ({ allowlist: next }) => this.#applyAllowlist(next),
        onError: (err, info) => this.#allowlistRefusedNow(err, info.keptVersion),
      },
      {
        fs: { readFile: async (p: string) => Buffer.from(await this.#read(p)).toString('utf8') },
        sleep: (ms, sig) => this.clock.sleep(ms, sig).catch(() => undefined),
      },
    );
    let allowlist: Allowlist;
    if (k8s?.source) {
      allowlist = await k8s.waitForAllowlist(signal);
      k8s.source.subscribe((next) => void this.#applyAllowlist(next));
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
      const source = this.config.spire.source;
      const restored = await restorePeers({
        state: this.stateStore,
        allowlist,
        spire: [...this.clients]
          .sort(([a], [b]) => (a === source ? -1 : b === source ? 1 : 0))
          .map(([name, client]) => ({
            name,
            listFederatedBundles: (sig) => client.listFederatedBundles({ signal: sig }),
          })),
        logger: this.logger,
        signal,
      });
      this.manager.restore(restored);
      for (const td of restoredFromState(restored))
        for (const name of this.clients.keys()) this.#mustPush.add(`${name}/${td}`);
      const initial = await this.manager.apply(allowlist);
      for (const td of initial.added) this.metrics.setPeerState(td, 'PENDING');
      this.metrics.allowlistReloaded({ ok: true, peers: allowlist.peers.length });
      await this.#audit.allowlistChanged({ version: allowlist.version, ...initial });
      this.#allowlistLoaded = true;
      await runTasks(this.#parts(k8s, watcher), signal, undefined, (f) =>
        this.logger.warn('error while stopping', { task: f.task, error: f.message }),
      );
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
          held: this.bundleSource(),
          peers: () => this.manager.peers(),
          clients: this.clients,
          admin: {
            status: () => this.status(),
            ready: () => this.readiness(),
            bundles: () => this.#allBundles(),
            diff: () => this.diff(),
            reconcile: () => this.reconcileNow(),
            resetSequence: (td) => this.resetSequence(td, 'admin API'),
            ...(this.#adminToken ? { adminToken: this.#adminToken } : {}),
          },
          listening: (what, address, endpoint) => {
            if (what === 'admin') this.#adminUrl = address;
            else if (what === 'verify') this.#verifyUrl = address;
            else if (endpoint) {
              this.#endpoint = endpoint;
              this.#resolveEndpoint(endpoint);
            }
          },
        },
      ),
      { name: 'federation', run: (sig) => this.manager.run(sig) },
      ...(k8s?.source ? [] : [{ name: 'allowlist watcher', run: (sig: AbortSignal) => watcher.run(sig) }]),
      {
        name: 'SPIRE sync',
        // Only the leader writes to SPIRE (and, on Kubernetes, to ConfigMaps and status).
        run: (sig) =>
          k8s
            ? k8s.runLeaderTasks(sig, {
                feed: this.store,
                snapshot: () =>
                  statusSnapshot(this.manager.status(), this.serverStatus(), (td) => this.targetsOf(td)),
                task: (leader) => this.#runSyncs(leader),
              })
            : this.#runSyncs(sig),
      },
    ];
  }

  /** Applies a new allowlist (file edit or Kubernetes change): manager, metrics, audit. */
  async #applyAllowlist(next: Allowlist): Promise<void> {
    const previousVersion = this.manager.allowlist?.version;
    this.logger.info('allowlist changed', { version: next.version });
    this.#allowlistRefused = undefined;
    const r = await this.manager.apply(next);
    for (const td of r.added) this.metrics.setPeerState(td, 'PENDING');
    this.metrics.allowlistReloaded({ ok: true, peers: next.peers.length });
    await this.#audit?.allowlistChanged({
      version: next.version,
      ...(previousVersion ? { previousVersion } : {}),
      ...r,
    });
  }

  /** A reload the watcher refused: the previous allowlist stays in force; status, metrics, log and audit say so. */
  #allowlistRefusedNow(err: BrokerError, keptVersion: string | undefined): void {
    this.#allowlistRefused = { code: err.code, message: err.message, at: this.clock.now() };
    this.metrics.allowlistReloaded({ ok: false });
    this.logger.error('allowlist refused; the previous one stays in force', {
      code: err.code,
      error: err.message,
      keptVersion,
    });
    this.#audit
      ?.allowlistRefused({ code: err.code, message: err.message, ...(keptVersion ? { keptVersion } : {}) })
      .catch((e: unknown) => {
        this.metrics.auditWriteFailed();
        this.logger.error('audit write failed', { record: 'allowlist-refused', error: String(e) });
      });
  }

  async #runSyncs(signal: AbortSignal): Promise<void> {
    await Promise.all([...this.syncs.values()].map((s) => s.run(signal)));
  }

  /** Whether this replica leads (always, without Kubernetes leader election). */
  isLeader(): boolean {
    return this.#k8s?.isLeader() ?? true;
  }

  /**
   * Ready when the allowlist is loaded and, on the leader, every last-known-good bundle has reached
   * every targeted server and no revocation is blocked (a follower serves but does not write).
   */
  readiness(): Readiness {
    const { reasons, satisfied } = readinessFrom({
      allowlistLoaded: this.#allowlistLoaded,
      leader: this.isLeader(),
      servers: this.serverStatus(),
      mustPush: [...this.#mustPush].map((k) => k.split('/') as [string, string]),
      targetsOf: (td) => this.routing.targetsOf(td),
    });
    for (const [server, td] of satisfied) this.#mustPush.delete(`${server}/${td}`);
    return { ready: reasons.length === 0, reasons };
  }

  peerStatus(): PeerStatus[] {
    return this.manager.status();
  }

  serverStatus(): ServerSyncStatus[] {
    return [...this.syncs.values()].map((s) => s.status());
  }
}
