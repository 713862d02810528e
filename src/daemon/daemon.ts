import { readFile } from 'node:fs/promises';
import { buildAdminApp, buildHealthApp, runAdmin } from '../admin/app.js';
import { runApp } from '../admin/http.js';
import { type BrokerStatus, brokerStatusFrom, type ReconcileDiff, toRfc3339 } from '../admin/status.js';
import { ensureAdminToken } from '../admin/token.js';
import { AuditTrail } from '../audit/audit-trail.js';
import type { AuditFs } from '../audit/fs.js';
import { AuditWriter } from '../audit/writer.js';
import { parseBundle } from '../bundle/codec.js';
import { diffBundles } from '../bundle/diff.js';
import { effectiveRefreshHint } from '../bundle/refresh.js';
import type { BundleSource } from '../bundle/source.js';
import type { TrustBundle } from '../bundle/trust-bundle.js';
import { AllowlistWatcher } from '../config/allowlist-watcher.js';
import type { Allowlist, BrokerConfig, PeerConfig, SpireServerConfig } from '../config/types.js';
import { LocalBundle } from '../endpoint/local-bundle.js';
import { type RunningBundleEndpoint, startBundleEndpoint } from '../endpoint/server.js';
import { MintedSvidCredentials } from '../endpoint/svid-credentials.js';
import { FileTlsCredentials, type TlsCredentialSource } from '../endpoint/tls-credentials.js';
import { BrokerError, FetchError, RuntimeError } from '../errors.js';
import { FederatedBundleStore } from '../federation/bundle-store.js';
import { type FetchDeps, type FetchProfile, fetchPeerBundle } from '../federation/fetch.js';
import {
  FederationManager,
  type FederationObserver,
  type PeerStatus,
  type RestoredPeer,
} from '../federation/manager.js';
import type { PeerFetcher } from '../federation/peer-updater.js';
import { nodeStateFs, type StateFs, StateStore } from '../federation/state-store.js';
import type { KubeApi } from '../k8s/kube-api.js';
import { parseKubernetesSettings } from '../k8s/settings.js';
import { BrokerMetrics, createMetricsRegistry, PropagationTracker } from '../metrics/broker-metrics.js';
import { type Clock, systemClock } from '../platform/clock.js';
import { type Logger, nullLogger } from '../platform/logger.js';
import { composeObservers } from '../platform/observers.js';
import {
  lockStateDir,
  PRIVATE_FILE_FORBIDDEN,
  STATE_DIR_FORBIDDEN,
  type StateDirLock,
  securePath,
} from '../platform/state-dir.js';
import { runTasks, type Task } from '../platform/tasks.js';
import { requireAllowlisted } from '../policy/evaluate.js';
import { MtlsProbe, type ProbePeer } from '../probe/mtls-probe.js';
import { spireFederationApi } from '../publish/spire-client-api.js';
import {
  blockingEntryCount,
  type ServerSyncStatus,
  SpireServerSync,
  type SpireSyncObserver,
} from '../publish/spire-sync.js';
import { SpiffeId } from '../spiffeid/spiffe-id.js';
import { TrustDomain } from '../spiffeid/trust-domain.js';
import { SpireServerClient } from '../spire/client.js';
import type { SvidSource } from '../tls/svid.js';
import { buildVerifyApiApp } from '../verify-api/app.js';
import { KubernetesIntegration, statusSnapshot } from './kubernetes.js';
import { FileManagedSetStore } from './managed-set-store.js';
import { BROKER_VERSION } from './version.js';

/** Side effects of the daemon; real defaults when omitted. */
export interface DaemonDeps {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Reads a file named by the configuration. */
  readonly readFile?: (path: string) => Promise<Uint8Array>;
  readonly stateFs?: StateFs;
  /** Transport for peer fetches (tests inject a connector that trusts a test CA). */
  readonly fetchDeps?: FetchDeps;
  /** Builds the client of one configured SPIRE server (tests may point it elsewhere). */
  readonly spireClient?: (
    server: SpireServerConfig,
    tls: Awaited<ReturnType<typeof loadSpireTls>>,
  ) => SpireServerClient;
  /** Uniform [0, 1) for jitter. */
  readonly random?: () => number;
  /** Extra observers (metrics, audit, tests). */
  readonly federationObserver?: Partial<FederationObserver>;
  readonly syncObserver?: Partial<SpireSyncObserver>;
  /** Environment (the leader-election identity variable). Default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Kubernetes API (tests); default from `kubernetes.credentials`. */
  readonly kubeApi?: KubeApi;
  /** File operations of the audit writer; default node:fs. */
  readonly auditFs?: AuditFs;
}

/** Readiness and the reasons it is not ready. */
export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

async function loadSpireTls(
  server: SpireServerConfig,
  read: (p: string) => Promise<Uint8Array>,
  td: TrustDomain,
) {
  if (!server.address.startsWith('dns:')) return undefined;
  const text = async (p: string | undefined, what: string): Promise<string> => {
    if (!p)
      throw new BrokerError(
        'ERR_CONFIG_FILE',
        `SPIRE server "${server.name}": ${what} is required for a dns: address`,
      );
    return Buffer.from(await read(p)).toString('utf8');
  };
  return {
    certChainPem: await text(server.adminCertFile, 'adminCertFile'),
    privateKeyPem: await text(server.adminKeyFile, 'adminKeyFile'),
    trustBundlePem: await text(server.serverBundleFile, 'serverBundleFile'),
    serverTrustDomain: td,
  };
}

/**
 * The composition root: builds every part of a broker from its configuration and runs them
 * together. Nothing here is logic of its own — it wires the federation manager (fetch → policy →
 * last-known-good), one SPIRE sync per server, the allowlist watcher, and exposes status and
 * readiness for the admin surface.
 */
export class BrokerDaemon {
  readonly config: BrokerConfig;
  readonly store = new FederatedBundleStore();
  readonly clock: Clock;
  readonly logger: Logger;
  readonly manager: FederationManager;
  readonly syncs: ReadonlyMap<string, SpireServerSync>;
  readonly clients: ReadonlyMap<string, SpireServerClient>;
  readonly stateStore: StateStore;
  /** The local bundle as published (present when an endpoint is configured, or always once run). */
  readonly localBundle: LocalBundle;
  #endpoint: RunningBundleEndpoint | undefined;
  #endpointReady: Promise<RunningBundleEndpoint> | undefined;
  #resolveEndpoint: ((ep: RunningBundleEndpoint) => void) | undefined;
  #allowlistLoaded = false;
  #audit: AuditTrail | undefined;
  #k8s: KubernetesIntegration | undefined;
  readonly #env: Readonly<Record<string, string | undefined>>;
  readonly #kubeApi: KubeApi | undefined;
  readonly #auditFs: AuditFs | undefined;
  #adminToken: string | undefined;
  /** The broker's metrics (a fresh registry per daemon). */
  readonly metrics: BrokerMetrics;
  readonly #propagation: PropagationTracker;
  #auditWriter: AuditWriter | undefined;
  #adminUrl: string | undefined;
  #verifyUrl: string | undefined;
  /** Trust domains whose last-known-good bundle was loaded at start and must be pushed before ready. */
  #mustPush = new Set<string>();
  readonly #read: (p: string) => Promise<Uint8Array>;
  readonly #bootstrap = new Map<string, Promise<TrustBundle | undefined>>();
  readonly #caPem = new Map<string, Promise<string>>();

  private constructor(config: BrokerConfig, deps: DaemonDeps, clients: Map<string, SpireServerClient>) {
    this.config = config;
    this.clock = deps.clock ?? systemClock;
    this.logger = deps.logger ?? nullLogger;
    this.#read = deps.readFile ?? (async (p) => new Uint8Array(await readFile(p)));
    this.#env = deps.env ?? process.env;
    this.#kubeApi = deps.kubeApi;
    this.#auditFs = deps.auditFs;
    this.clients = clients;
    // Stored bundles are re-parsed with the same limits as fetched ones: a default-sized parser
    // would quarantine every bundle accepted under a raised fetch.maxBodyBytes at each restart.
    this.stateStore = new StateStore(
      { dir: config.stateDir, parse: { maxBytes: config.fetch.maxBodyBytes } },
      { fs: deps.stateFs ?? nodeStateFs, now: () => this.clock.now() },
    );
    const log = this.logger;
    const store = this.store;
    this.metrics = new BrokerMetrics({
      registry: createMetricsRegistry(),
      clock: this.clock,
      bundles: () => this.#allBundles(),
      heldRequests: () => this.#endpoint?.app.bundleEndpoint.heldRequests() ?? 0,
      syncStatus: () => this.serverStatus(),
      build: { version: BROKER_VERSION, nodeVersion: process.version },
    });
    const metrics = this.metrics;
    this.#propagation = new PropagationTracker({
      clock: this.clock,
      metrics,
      targets: (td) => this.targetsOf(td),
    });
    const propagation = this.#propagation;
    const audited = (p: Promise<unknown> | undefined, what: string): void => {
      p?.catch((err: unknown) => {
        metrics.auditWriteFailed();
        log.error('audit write failed', {
          record: what,
          error: err instanceof Error ? err.message : String(err),
        });
      });
    };

    this.manager = new FederationManager({
      clock: this.clock,
      fetcher: this.#fetcher(deps.fetchDeps ?? {}),
      store,
      persist: async (bundle, meta) => {
        await this.stateStore.saveAccepted(bundle, meta);
      },
      forget: (td) => this.stateStore.remove(TrustDomain.parse(td)),
      persistReset: async (td) => {
        await this.stateStore.resetSequence(TrustDomain.parse(td));
      },
      ...(deps.random ? { random: deps.random } : {}),
      logger: log,
      observer: composeObservers<FederationObserver>(
        [
          {
            accepted: (peer, bundle, previous) =>
              log.info('accepted peer bundle', {
                trustDomain: peer.trustDomain.name,
                sequence: bundle.sequence,
                previousSequence: previous?.sequence,
              }),
            refused: (peer, error) =>
              log.warn('refused peer bundle', {
                trustDomain: peer.trustDomain.name,
                code: error.code,
                error: error.message,
              }),
            failed: (peer, error) =>
              log.warn('peer fetch failed', {
                trustDomain: peer.trustDomain.name,
                code: error.code,
                error: error.message,
              }),
            revoked: (td) => log.warn('peer revoked: removed from the allowlist', { trustDomain: td }),
            stateChanged: (td, from, to) => log.info('peer state changed', { trustDomain: td, from, to }),
          },
          {
            // The audit trail: every accepted bundle, refusal and revocation (docs/audit.md).
            accepted: (peer, bundle, previous) =>
              audited(
                this.#audit?.bundleAccepted({
                  trustDomain: peer.trustDomain,
                  sequence: bundle.sequence,
                  diff: diffBundles(previous, bundle),
                }),
                'bundle-accepted',
              ),
            refused: (peer, error) =>
              audited(
                this.#audit?.bundleRefused({
                  trustDomain: peer.trustDomain,
                  code: error.code,
                  message: error.message,
                }),
                'bundle-refused',
              ),
            revoked: (td) =>
              audited(
                this.#audit?.revocation({
                  trustDomain: td,
                  code: 'ERR_PEER_REMOVED',
                  message: 'removed from the allowlist',
                }),
                'revocation',
              ),
          },
          {
            // Metrics.
            fetched: (peer, result, reason, durationMs) => {
              metrics.observeFetch({
                peer: peer.trustDomain.name,
                result: result === 'ok' ? 'updated' : result === 'error' ? 'failed' : result,
                reason,
                durationSeconds: durationMs / 1000,
              });
              if (result === 'unchanged') metrics.bundleConfirmed(peer.trustDomain.name, this.clock.now());
            },
            accepted: (peer, bundle) => {
              metrics.setBundle(peer.trustDomain.name, {
                sequence: bundle.sequence,
                refreshHintSeconds: bundle.refreshHint,
                confirmedAt: this.clock.now(),
              });
              propagation.seen(bundle);
            },
            stateChanged: (td, _from, to) => metrics.setPeerState(td, to),
            revoked: (td) => {
              metrics.removePeer(td);
              propagation.forget(td);
            },
          },
          deps.federationObserver,
        ],
        (err, event) => log.error('observer failed', { event, error: String(err) }),
      ),
    });

    const managed = new FileManagedSetStore(this.stateStore);
    const syncs = new Map<string, SpireServerSync>();
    for (const [name, client] of clients) {
      syncs.set(
        name,
        new SpireServerSync(name, {
          clock: this.clock,
          api: spireFederationApi(client),
          managed,
          desired: () => this.desiredFor(name),
          retained: () => this.retainedFor(name),
          enforce: config.reconcile.enforce,
          deleteMode: config.reconcile.deleteMode,
          observer: composeObservers<SpireSyncObserver>(
            [
              {
                synced: (server, result) => {
                  if (result !== 'ok') log.warn('SPIRE sync incomplete', { server, result });
                },
                written: (server, bundle, r) => {
                  if (r.ok) this.#mustPush.delete(`${server}/${bundle.trustDomain.name}`);
                  log.info('wrote federated bundle to SPIRE', {
                    server,
                    trustDomain: bundle.trustDomain.name,
                    sequence: bundle.sequence,
                    ok: r.ok,
                    message: r.message,
                  });
                },
                deleted: (server, td, reason, r) =>
                  r.ok
                    ? log.warn('deleted federated bundle from SPIRE', { server, trustDomain: td, reason })
                    : log.error('SPIRE refused to delete a federated bundle; it stays trusted there', {
                        server,
                        trustDomain: td,
                        reason,
                        code: 'ERR_SPIRE_REVOCATION_BLOCKED',
                        grpcCode: r.code,
                        entries: blockingEntryCount(r.message),
                        message: r.message,
                      }),
                drift: (server, tds) =>
                  log.warn('drift: federated bundles not in the allowlist', { server, trustDomains: tds }),
                conflict: (server, tds) =>
                  log.warn('SPIRE federates with these trust domains itself; leaving them alone', {
                    server,
                    trustDomains: tds,
                  }),
              },
              {
                written: (server, bundle, r) =>
                  audited(
                    this.#audit?.spireWrite({
                      server,
                      trustDomain: bundle.trustDomain,
                      operation: 'set',
                      result: r.ok ? 'ok' : 'error',
                      ...(r.ok ? {} : { code: String(r.code), message: r.message }),
                    }),
                    'spire-write',
                  ),
                deleted: (server, td, reason, r) =>
                  audited(
                    this.#audit?.spireWrite({
                      server,
                      trustDomain: td,
                      operation: 'delete',
                      result: r.ok ? 'ok' : 'error',
                      ...(r.ok ? {} : { code: 'ERR_SPIRE_REVOCATION_BLOCKED' }),
                      message: `${reason}: ${r.message}`,
                    }),
                    'spire-write',
                  ),
                drift: (server, tds) => {
                  for (const td of tds) {
                    audited(
                      this.#audit?.drift({
                        server,
                        trustDomain: td,
                        detail: 'federated bundle not named by the allowlist',
                        repaired: config.reconcile.enforce,
                      }),
                      'drift',
                    );
                  }
                },
              },
              metrics.spireSyncObserver(propagation),
              deps.syncObserver,
            ],
            (err, event) => log.error('observer failed', { event, error: String(err) }),
          ),
        }),
      );
    }
    this.syncs = syncs;
    this.localBundle = new LocalBundle({
      source: this.sourceClientOf(config.spire.source),
      trustDomain: config.trustDomain,
      ...(config.endpoint
        ? {
            pollIntervalMs: config.endpoint.pollIntervalMs,
            refreshHintSeconds: config.endpoint.refreshHintSeconds,
          }
        : {}),
      deps: { clock: this.clock, logger: log },
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
    const clients = new Map<string, SpireServerClient>();
    for (const server of config.spire.servers) {
      const tls = await loadSpireTls(server, read, config.trustDomain);
      clients.set(
        server.name,
        deps.spireClient
          ? deps.spireClient(server, tls)
          : new SpireServerClient({
              address: server.address,
              timeoutMs: server.timeoutMs,
              ...(tls ? { tls } : {}),
            }),
      );
    }
    return new BrokerDaemon(config, deps, clients);
  }

  /** The bundles SPIRE server `name` should hold: every held bundle whose peer targets it. */
  desiredFor(name: string): Map<string, TrustBundle> {
    const out = new Map<string, TrustBundle>();
    for (const peer of this.manager.peers()) {
      if (peer.targetServers !== 'all' && !peer.targetServers.includes(name)) continue;
      const b = this.store.get(peer.trustDomain.name);
      if (b) out.set(peer.trustDomain.name, b);
    }
    return out;
  }

  /**
   * Allowlisted trust domains aimed at SPIRE server `name` for which no bundle is held (never
   * fetched, state file lost, SPIRE unreachable at start): what the server holds for them stays
   * untouched — a restart must never revoke a peer that is still allowlisted.
   */
  retainedFor(name: string): Set<string> {
    const out = new Set<string>();
    for (const peer of this.manager.peers()) {
      if (peer.targetServers !== 'all' && !peer.targetServers.includes(name)) continue;
      if (!this.store.get(peer.trustDomain.name)) out.add(peer.trustDomain.name);
    }
    return out;
  }

  /** The SPIRE servers a peer's bundle is written to (its allowlist entry's targets, resolved). */
  targetsOf(trustDomain: string): string[] {
    const peer = this.manager.peers().find((p) => p.trustDomain.name === trustDomain);
    if (!peer) return [];
    return peer.targetServers === 'all'
      ? [...this.clients.keys()]
      : peer.targetServers.filter((n) => this.clients.has(n));
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
    return brokerStatusFrom({
      trustDomain: this.config.trustDomain.name,
      peers: this.manager.status(),
      servers: this.serverStatus(),
      bundle: (td) => this.store.get(td),
      targetServers: (td) => this.targetsOf(td),
      now: this.clock.now(),
    });
  }

  /** What a reconcile would change in every SPIRE server, changing nothing (`spiffe-broker diff`). */
  async diff(): Promise<ReconcileDiff> {
    const servers = await Promise.all(
      [...this.syncs.values()].map(async (sync) => {
        try {
          const plan = await sync.plan();
          const enforce = this.config.reconcile.enforce;
          return {
            name: sync.name,
            reachable: true,
            error: null,
            changes: [
              ...plan.toSet.map((c) => ({
                trustDomain: c.bundle.trustDomain.name,
                action: c.current ? ('update' as const) : ('create' as const),
                reason: c.current ? ('changed' as const) : ('missing' as const),
                from: c.current ? c.current.sequence.toString() : null,
                to: c.bundle.sequence.toString(),
              })),
              ...plan.revoke.map((td) => ({
                trustDomain: td,
                action: 'delete' as const,
                reason: 'revoked' as const,
                from: plan.actual.get(td)?.sequence.toString() ?? null,
                to: null,
              })),
              ...(enforce ? plan.drift : []).map((td) => ({
                trustDomain: td,
                action: 'delete' as const,
                reason: 'drift' as const,
                from: plan.actual.get(td)?.sequence.toString() ?? null,
                to: null,
              })),
            ],
            drift: enforce ? [] : [...plan.drift],
            conflicts: [...plan.conflicts],
          };
        } catch (err) {
          const e = err instanceof BrokerError ? err : new BrokerError('ERR_SPIRE_RPC', String(err));
          return {
            name: sync.name,
            reachable: false,
            error: { code: e.code, message: e.message },
            changes: [],
            drift: [],
            conflicts: [],
          };
        }
      }),
    );
    return {
      trustDomain: this.config.trustDomain.name,
      generatedAt: toRfc3339(this.clock.now())!,
      enforce: this.config.reconcile.enforce,
      servers,
    };
  }

  /**
   * An operator's explicit reset of a peer's `spiffe_sequence` baseline (e.g. the peer rebuilt its
   * trust domain and restarted its sequence): the next bundle is accepted even with a lower
   * sequence, the persisted high-water mark is reset, and the reset is audited. Fetches at once.
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
      [...this.syncs.values()].map(async (s) => {
        await Promise.race([s.reconcileSoon(), this.clock.sleep(30_000)]);
      }),
    );
  }

  /** Serves the admin API (status, readiness, metrics, bundles, diff) until `signal` aborts. */
  async #runAdmin(signal: AbortSignal): Promise<void> {
    const a = this.config.admin;
    const app = await buildAdminApp({
      status: () => this.status(),
      ready: () => this.readiness(),
      metrics: this.metrics,
      bundles: () => this.#allBundles(),
      diff: () => this.diff(),
      reconcile: () => this.reconcileNow(),
      resetSequence: (td) => this.resetSequence(td, 'admin API'),
      ...(this.#adminToken ? { adminToken: this.#adminToken } : {}),
    });
    await runAdmin(app, {
      listen: a.socket ? { path: a.socket } : (a.listen ?? { host: '127.0.0.1', port: 8089 }),
      signal,
      onListening: (address) => {
        this.#adminUrl = address;
        this.logger.info('admin API listening', { address });
      },
    });
  }

  /** Serves the plain-HTTP health listener (`probe.listen`): /healthz, /readyz, /metrics. */
  async #runHealth(signal: AbortSignal): Promise<void> {
    const listen = this.config.probe.listen;
    if (!listen) return;
    const app = buildHealthApp({ ready: () => this.readiness(), metrics: this.metrics });
    await runApp(app, {
      listen,
      signal,
      onListening: (address) => this.logger.info('health listener up', { address }),
    });
  }

  /** Serves the SVID verification API until `signal` aborts. */
  async #runVerifyApi(signal: AbortSignal): Promise<void> {
    const app = await buildVerifyApiApp({
      source: this.bundleSource(),
      now: () => this.clock.now(),
      metrics: this.metrics,
      bodyLimit: this.config.verify.maxBodyBytes,
    });
    await runApp(app, {
      listen: this.config.verify.listen,
      signal,
      onListening: (address) => {
        this.#verifyUrl = address;
        this.logger.info('verify API listening', { address });
      },
    });
  }

  /**
   * Runs the cross-domain mTLS probe (when `probe.listen` is configured): the broker's own X509-SVID
   * minted from the source SPIRE server, a probe port, and a handshake with every allowlisted peer
   * that names its probe port, judged with the bundles exactly as the local SPIRE servers hold them.
   */
  async #runProbe(signal: AbortSignal): Promise<void> {
    const listen = this.config.mtlsProbe.listen;
    if (!listen) return;
    const credentials = new MintedSvidCredentials({
      minter: this.sourceClient(),
      spiffeId:
        this.config.endpoint?.spiffeId ?? SpiffeId.fromPath(this.config.trustDomain, '/spiffe-broker'),
      deps: { clock: this.clock, logger: this.logger, readFile: this.#read },
    });
    const first = await credentials.ready(signal);
    const material = (c: { certChainPem: string; keyPem: string }) => ({
      certChainPem: c.certChainPem,
      privateKeyPem: c.keyPem,
    });
    let current = material(first);
    const svid: SvidSource = {
      current: () => current,
      subscribe: (listener) =>
        credentials.subscribe((c) => {
          current = material(c);
          listener(current);
        }),
    };
    const probe = new MtlsProbe({
      trustDomain: this.config.trustDomain,
      svid,
      clock: this.clock,
      metrics: this.metrics,
      listen,
      intervalMs: this.config.mtlsProbe.intervalMs,
      // Inbound probe clients are verified against the bundles the broker holds before SPIRE is read.
      heldBundles: this.bundleSource(),
      peers: () =>
        this.manager.peers().flatMap((p): ProbePeer[] => {
          if (!p.probe) return [];
          const expectedId =
            p.probe.expectedId ??
            (p.profile.kind === 'https_spiffe' ? p.profile.endpointSpiffeId : undefined);
          return [
            {
              trustDomain: p.trustDomain,
              host: p.probe.host,
              port: p.probe.port,
              ...(expectedId ? { expectedId } : {}),
            },
          ];
        }),
      bundlesAsSpireHolds: async (td, sig) =>
        Promise.all(
          [...this.clients].map(async ([server, client]) => ({
            server,
            bundle: td.equals(this.config.trustDomain)
              ? await client.getBundle(sig ? { signal: sig } : {})
              : await client.findFederatedBundle(td, sig ? { signal: sig } : {}),
          })),
        ),
      onResult: (r) => this.logger.debug('mTLS probe', { result: r }),
    });
    await Promise.all([credentials.run(signal), probe.run(signal)]);
  }

  /** `http://host:port` of the verify API once it listens. */
  get verifyUrl(): string | undefined {
    return this.#verifyUrl;
  }

  /** The source SPIRE server's client (whose bundle the endpoint publishes). */
  sourceClient(): SpireServerClient {
    return this.sourceClientOf(this.config.spire.source);
  }

  private sourceClientOf(name: string): SpireServerClient {
    const c = this.clients.get(name);
    if (!c) throw new TypeError(`no SPIRE server named "${name}"`);
    return c;
  }

  /** The bundle endpoint once it listens (its URL and port), when one is configured. */
  endpoint(): Promise<RunningBundleEndpoint> {
    if (!this.config.endpoint) return Promise.reject(new TypeError('no bundle endpoint configured'));
    return this.#endpointReady!;
  }

  get endpointUrl(): string | undefined {
    return this.#endpoint?.url;
  }

  /** `http://host:port` of the admin API once it listens (undefined until then). */
  get adminUrl(): string | undefined {
    return this.#adminUrl;
  }

  /** Starts the HTTPS bundle endpoint with the configured profile; resolves once it listens. */
  async #startEndpoint(signal: AbortSignal): Promise<RunningBundleEndpoint | undefined> {
    const ep = this.config.endpoint;
    if (!ep) return undefined;
    const deps = { clock: this.clock, logger: this.logger, readFile: this.#read };
    let credentials: TlsCredentialSource;
    if (ep.profile === 'https_web' || (ep.certFile && ep.keyFile)) {
      if (!ep.certFile || !ep.keyFile)
        throw new TypeError('endpoint: certFile and keyFile are required for https_web');
      credentials = new FileTlsCredentials({ certFile: ep.certFile, keyFile: ep.keyFile, deps });
    } else {
      credentials = new MintedSvidCredentials({
        minter: this.sourceClient(),
        spiffeId: ep.spiffeId ?? SpiffeId.fromPath(this.config.trustDomain, '/spiffe-broker'),
        deps,
      });
    }
    const running = await startBundleEndpoint(
      {
        host: ep.listen.host,
        port: ep.listen.port,
        local: this.localBundle,
        credentials,
        maxHeldRequests: ep.maxHeldRequests,
        ...(ep.bundleMapPath
          ? {
              bundleMap: {
                path: ep.bundleMapPath,
                ...(ep.serveFederatedInMap ? { federated: this.store } : {}),
              },
            }
          : {}),
        deps,
      },
      signal,
    );
    this.#endpoint = running;
    this.#resolveEndpoint?.(running);
    this.logger.info('bundle endpoint listening', { url: running.url, profile: ep.profile });
    return running;
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
    const lock = await this.#takeStateDir();
    // Kubernetes: the allowlist from FederationPeer objects, leader election, ConfigMaps, status.
    const k8s = this.config.kubernetes
      ? new KubernetesIntegration({
          settings: parseKubernetesSettings(this.config.kubernetes),
          clock: this.clock,
          logger: this.logger,
          env: this.#env,
          stateDir: this.config.stateDir,
          localTrustDomain: this.config.trustDomain,
          serverNames: [...this.clients.keys()],
          ...(this.#kubeApi ? { api: this.#kubeApi } : {}),
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
      await runTasks(tasks, signal, (f) => {
        const code = f.error instanceof BrokerError ? f.error.code : undefined;
        this.logger.error('broker stopping: a part failed', { task: f.task, code, error: f.message });
      });
    } finally {
      for (const c of this.clients.values()) c.close();
      await lock.release();
    }
  }

  /** Creates the state directory, checks its and the audit key's permissions, takes its lock. */
  async #takeStateDir(): Promise<StateDirLock> {
    const dir = this.config.stateDir;
    const fixed = (what: string, path: string, r: { fixed: number }) => {
      if (r.fixed)
        this.logger.warn(`${what} was too open; fixed`, { path, removedModeBits: `0${r.fixed.toString(8)}` });
    };
    fixed('state directory', dir, await securePath(dir, STATE_DIR_FORBIDDEN, 'state directory'));
    await this.stateStore.ensureDir();
    const lock = await lockStateDir(dir);
    try {
      // The credential of the admin API's mutating routes, read by the CLI (docs/security.md).
      const token = await ensureAdminToken(dir);
      this.#adminToken = token.token;
      if (token.fixedMode !== undefined)
        this.logger.warn('admin token file was too open; fixed', { path: token.path });
      fixed(
        'audit key',
        this.config.audit.keyFile,
        await securePath(this.config.audit.keyFile, PRIVATE_FILE_FORBIDDEN, 'audit key'),
      );
    } catch (err) {
      await lock.release();
      throw err;
    }
    return lock;
  }

  /** Loads allowlist and state, then runs every part of the broker as one task group. */
  async #runBroker(signal: AbortSignal, k8s: KubernetesIntegration | undefined): Promise<void> {
    const watcher = new AllowlistWatcher(
      {
        path: this.config.allowlist.file,
        parseOptions: { localTrustDomain: this.config.trustDomain, serverNames: [...this.clients.keys()] },
        onChange: ({ allowlist: next }) => this.#applyAllowlist(next),
        onError: (err, info) => {
          this.metrics.allowlistReloaded({ ok: false });
          this.logger.error('allowlist refused; the previous one stays in force', {
            code: err.code,
            error: err.message,
            keptVersion: info.keptVersion,
          });
        },
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
    this.#auditWriter = await AuditWriter.open(
      { file: this.config.audit.file, keyFile: this.config.audit.keyFile, fsync: this.config.audit.fsync },
      { now: () => this.clock.now(), ...(this.#auditFs ? { fs: this.#auditFs } : {}) },
    );
    try {
      this.#audit = new AuditTrail(this.#auditWriter);
      await this.#restoreState(allowlist, signal);
      const initial = await this.manager.apply(allowlist);
      for (const td of initial.added) this.metrics.setPeerState(td, 'PENDING');
      this.metrics.allowlistReloaded({ ok: true, peers: allowlist.peers.length });
      await this.#audit.allowlistChanged({ version: allowlist.version, ...initial });
      this.#allowlistLoaded = true;
      await runTasks(
        [
          { name: 'local bundle', run: (sig) => this.localBundle.run(sig) },
          listener('bundle endpoint', async (sig) => {
            const running = await this.#startEndpoint(sig);
            await running?.closed;
          }),
          listener('admin API', (sig) => this.#runAdmin(sig)),
          listener('verify API', (sig) => this.#runVerifyApi(sig)),
          listener('mTLS probe', (sig) => this.#runProbe(sig)),
          listener('health listener', (sig) => this.#runHealth(sig)),
          { name: 'federation', run: (sig) => this.manager.run(sig) },
          ...(k8s?.source
            ? []
            : [{ name: 'allowlist watcher', run: (sig: AbortSignal) => watcher.run(sig) }]),
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
        ],
        signal,
      );
    } finally {
      // Every part has returned: nothing can be accepted (or audited) after this point.
      this.#audit = undefined;
      await this.#auditWriter.close().catch(() => undefined);
    }
  }

  /** Seeds the manager with last-known-good bundles and high-water marks (re-read from SPIRE where lost). */
  async #restoreState(allowlist: Allowlist, signal: AbortSignal): Promise<void> {
    const loaded = await this.stateStore.loadAll();
    for (const p of loaded.problems)
      this.logger.error('state file problem', { code: p.code, error: p.message });
    const allowed = new Set(allowlist.peers.map((p) => p.trustDomain.name));
    const restored: RestoredPeer[] = [];
    for (const s of loaded.peers) {
      const td = s.trustDomain.name;
      if (!allowed.has(td)) continue;
      const b = s.lastKnownGood?.bundle;
      restored.push({
        trustDomain: td,
        ...(b ? { bundle: b, origin: 'state' as const } : {}),
        ...(s.sequenceHighWaterMark !== undefined ? { sequenceFloor: s.sequenceHighWaterMark } : {}),
      });
      if (b) for (const name of this.clients.keys()) this.#mustPush.add(`${name}/${td}`);
    }
    // A peer whose last-known-good file is gone: what SPIRE holds for it is the best baseline
    // (it authenticates an https_spiffe endpoint and bounds rollback) — re-read it, say so.
    const lost = allowlist.peers
      .map((p) => p.trustDomain)
      .filter((td) => !restored.some((r) => r.trustDomain === td.name && r.bundle));
    for (const r of await this.#recoverFromSpire(lost, signal)) {
      const floor = restored.find((x) => x.trustDomain === r.trustDomain)?.sequenceFloor;
      restored.push({ ...r, ...(floor !== undefined ? { sequenceFloor: floor } : {}) });
    }
    this.manager.restore(restored);
  }

  /**
   * Reads, from the SPIRE servers (the source server first), the federated bundle of each trust
   * domain whose last-known-good file did not load, and persists what it finds as the new
   * last-known-good. A server that does not answer within 5 s is skipped: then nothing is held for
   * that peer, and the syncs leave what SPIRE holds untouched until a fetch succeeds.
   */
  async #recoverFromSpire(tds: readonly TrustDomain[], signal: AbortSignal): Promise<RestoredPeer[]> {
    if (tds.length === 0) return [];
    const source = this.config.spire.source;
    const order = [...this.clients].sort(([a], [b]) => (a === source ? -1 : b === source ? 1 : 0));
    const want = new Set(tds.map((td) => td.name));
    const out: RestoredPeer[] = [];
    // One ListFederatedBundles per server, not one call per peer: a cold start with thousands of
    // lost files and a SPIRE that is down must not wait thousands of timeouts.
    for (const [server, client] of order) {
      if (want.size === 0) break;
      const held = await client
        .listFederatedBundles({ signal: AbortSignal.any([signal, AbortSignal.timeout(5000)]) })
        .catch((err: unknown) => {
          this.logger.warn('could not read federated bundles from SPIRE to recover lost state', {
            server,
            error: String(err),
          });
          return [];
        });
      for (const bundle of held) {
        const td = bundle.trustDomain.name;
        if (!want.delete(td)) continue;
        out.push({ trustDomain: td, bundle, origin: `spire:${server}` });
        this.logger.warn('last-known-good bundle re-read from SPIRE (its state file was missing)', {
          trustDomain: td,
          server,
          sequence: bundle.sequence,
        });
        await this.stateStore.saveAccepted(bundle).catch((err: unknown) =>
          this.logger.error('could not persist the bundle re-read from SPIRE', {
            trustDomain: td,
            error: String(err),
          }),
        );
      }
    }
    return out;
  }

  /** Applies a new allowlist (file edit or Kubernetes change): manager, metrics, audit. */
  async #applyAllowlist(next: Allowlist): Promise<void> {
    const previousVersion = this.manager.allowlist?.version;
    this.logger.info('allowlist changed', { version: next.version });
    const r = await this.manager.apply(next);
    for (const td of r.added) this.metrics.setPeerState(td, 'PENDING');
    this.metrics.allowlistReloaded({ ok: true, peers: next.peers.length });
    await this.#audit?.allowlistChanged({
      version: next.version,
      ...(previousVersion ? { previousVersion } : {}),
      ...r,
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
   * every targeted server (a follower serves but does not write to SPIRE).
   */
  readiness(): Readiness {
    const reasons: string[] = [];
    if (!this.#allowlistLoaded) reasons.push('allowlist not loaded yet');
    if (!this.isLeader()) return { ready: reasons.length === 0, reasons };
    // A revocation SPIRE refused: the peer's keys are still trusted there (docs/operations.md).
    for (const server of this.serverStatus()) {
      for (const [td, st] of server.trustDomains) {
        if (st.error?.code === 'ERR_SPIRE_REVOCATION_BLOCKED')
          reasons.push(`revocation of ${td} blocked on SPIRE server ${server.name}: ${st.error.message}`);
      }
    }
    for (const key of this.#mustPush) {
      const [server, td] = key.split('/') as [string, string];
      const target = this.manager.peers().find((p) => p.trustDomain.name === td)?.targetServers;
      if (target !== undefined && target !== 'all' && !target.includes(server)) continue;
      reasons.push(`last-known-good bundle of ${td} not yet written to SPIRE server ${server}`);
    }
    return { ready: reasons.length === 0, reasons };
  }

  peerStatus(): PeerStatus[] {
    return this.manager.status();
  }

  serverStatus(): ServerSyncStatus[] {
    return [...this.syncs.values()].map((s) => s.status());
  }

  /** Adapts the one-shot fetch to the updater's fetcher, resolving each peer's TLS profile. */
  #fetcher(fetchDeps: FetchDeps): PeerFetcher {
    return {
      fetch: async (peer, opts) => {
        const profile = await this.#profile(peer);
        const r = await fetchPeerBundle(
          {
            trustDomain: peer.trustDomain,
            urls: peer.urls,
            profile,
            ...(opts.etag !== undefined ? { etag: opts.etag } : {}),
            ...(opts.waitSeconds !== undefined ? { waitSeconds: opts.waitSeconds } : {}),
            limits: {
              connectTimeoutMs: this.config.fetch.connectTimeoutMs,
              timeoutMs: this.config.fetch.timeoutMs,
              maxBodyBytes: this.config.fetch.maxBodyBytes,
            },
            signal: opts.signal,
          },
          { clock: this.clock, ...fetchDeps },
        );
        return r.kind === 'bundle'
          ? {
              kind: 'bundle',
              bundle: r.bundle,
              url: r.url,
              supportsLongPoll: r.supportsLongPoll,
              ...(r.etag ? { etag: r.etag } : {}),
            }
          : { kind: 'not-modified', url: r.url, etag: r.etag, supportsLongPoll: r.supportsLongPoll };
      },
    };
  }

  async #profile(peer: PeerConfig): Promise<FetchProfile> {
    const p = peer.profile;
    if (p.kind === 'https_web') {
      if (!p.caFile) return { kind: 'https_web' };
      let ca = this.#caPem.get(p.caFile);
      if (!ca) {
        ca = this.#read(p.caFile).then((b) => Buffer.from(b).toString('utf8'));
        this.#caPem.set(p.caFile, ca);
        ca.catch(() => this.#caPem.delete(p.caFile!));
      }
      return { kind: 'https_web', caPem: await ca };
    }
    const endpointTd = p.endpointSpiffeId.trustDomain;
    const bootstrap = await this.#bootstrapBundle(endpointTd, p.bootstrapBundleFile);
    // SPIFFE Federation §5.2.2.4: the first connection uses the operator's bootstrap bundle, every
    // later one the latest accepted bundle of the endpoint ID's trust domain.
    const bundles: BundleSource = {
      getBundleForTrustDomain: (td) =>
        this.store.getBundleForTrustDomain(td) ?? (td.equals(endpointTd) ? bootstrap : undefined),
    };
    if (!this.store.get(endpointTd.name) && !bootstrap) {
      throw new FetchError(
        'ERR_FETCH_NO_BOOTSTRAP_BUNDLE',
        `no bundle of ${endpointTd.name} to authenticate ${p.endpointSpiffeId.toString()}: configure bootstrapBundleFile`,
      );
    }
    return { kind: 'https_spiffe', endpointSpiffeId: SpiffeId.parse(p.endpointSpiffeId.toString()), bundles };
  }

  async #bootstrapBundle(td: TrustDomain, file: string | undefined): Promise<TrustBundle | undefined> {
    if (!file) return undefined;
    const key = `${td.name}\n${file}`;
    let b = this.#bootstrap.get(key);
    if (!b) {
      b = this.#read(file).then((bytes) => parseBundle(td, bytes).bundle);
      this.#bootstrap.set(key, b);
      b.catch(() => this.#bootstrap.delete(key));
    }
    return b;
  }
}

/** Socket errors that mean a listener could not bind its address. */
const BIND_ERRORS = new Set(['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL', 'EPERM', 'ENOENT', 'EINVAL']);

/** A listener task whose bind failure becomes a coded `ERR_LISTEN` naming the listener. */
function listener(name: string, run: (signal: AbortSignal) => Promise<void>): Task {
  return {
    name,
    run: (signal) =>
      run(signal).catch((err: unknown) => {
        const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
        if (
          typeof code === 'string' &&
          BIND_ERRORS.has(code) &&
          (err as { syscall?: string }).syscall !== 'open'
        )
          throw new RuntimeError('ERR_LISTEN', `${name} cannot listen: ${(err as Error).message}`, {
            cause: err,
          });
        throw err;
      }),
  };
}

/** The effective refresh hint of a bundle (seconds), as status reports it. */
export function statusRefreshHint(bundle: TrustBundle | undefined): number | undefined {
  return bundle ? effectiveRefreshHint(bundle, { minHintSeconds: 0, defaultHintSeconds: 300 }) : undefined;
}
