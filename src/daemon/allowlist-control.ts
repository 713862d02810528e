import type { AllowlistStatus } from '../adapters/admin/status.js';
import { toRfc3339 } from '../adapters/admin/status.js';
import type { AuditTrail } from '../adapters/audit/audit-trail.js';
import type { BrokerMetrics } from '../adapters/metrics/broker-metrics.js';
import { AllowlistWatcher, type AllowlistWatcherFs } from '../engine/config/allowlist-watcher.js';
import type { Allowlist, BrokerConfig } from '../engine/config/types.js';
import type { IdleConnections } from '../engine/federation/idle-connections.js';
import type { FederationManager } from '../engine/federation/manager.js';
import type { BrokerError } from '../errors.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';

/**
 * The allowlist in force and how a new one takes effect: applied to the federation manager,
 * counted in metrics and recorded in the audit trail — or, when a reload is refused, kept, with
 * the refusal in status (`allowlist.refused`), metrics, the log and the audit trail.
 */
export class AllowlistControl {
  readonly #deps: {
    readonly manager: FederationManager;
    readonly metrics: BrokerMetrics;
    readonly logger: Logger;
    readonly clock: Clock;
    readonly audit: () => AuditTrail | undefined;
    /** The kept-alive connection pool, sized to the allowlist when its `maxIdle` is `'auto'`. */
    readonly connections?: Pick<IdleConnections, 'fitTo'>;
  };
  #loaded = false;
  #refused: { code: string; message: string; at: number } | undefined;

  constructor(deps: {
    manager: FederationManager;
    metrics: BrokerMetrics;
    logger: Logger;
    clock: Clock;
    audit: () => AuditTrail | undefined;
    connections?: Pick<IdleConnections, 'fitTo'>;
  }) {
    this.#deps = deps;
  }

  /** An allowlist took effect at start. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** The `allowlist` member of `/v1/status`. */
  status(): AllowlistStatus {
    const r = this.#refused;
    return {
      version: this.#deps.manager.allowlist?.version ?? null,
      refused: r ? { code: r.code, message: r.message, at: toRfc3339(r.at)! } : null,
    };
  }

  /** The file watcher of `allowlist.file`; every file an entry names is checked at each load. */
  watcher(
    config: BrokerConfig,
    read: (p: string) => Promise<Uint8Array>,
    serverNames: string[],
    stat?: AllowlistWatcherFs['stat'],
  ): AllowlistWatcher {
    const { clock } = this.#deps;
    return new AllowlistWatcher(
      {
        path: config.allowlist.file,
        parseOptions: { localTrustDomain: config.trustDomain, serverNames },
        referencedFiles: { readFile: read },
        onChange: ({ allowlist }) => this.apply(allowlist),
        onError: (err, info) => this.refuse(err, info.keptVersion),
      },
      {
        fs: {
          readFile: async (p: string) => Buffer.from(await read(p)).toString('utf8'),
          ...(stat ? { stat } : {}),
        },
        sleep: (ms, sig) => clock.sleep(ms, sig).catch(() => undefined),
      },
    );
  }

  /** Applies an allowlist (at start, a file edit or a Kubernetes change): manager, metrics, audit. */
  async apply(next: Allowlist): Promise<void> {
    const { manager, metrics, logger } = this.#deps;
    const previousVersion = manager.allowlist?.version;
    if (this.#loaded) logger.info('allowlist changed', { version: next.version });
    this.#refused = undefined;
    const r = await manager.apply(next);
    this.#deps.connections?.fitTo(next.peers.length);
    for (const td of r.added) metrics.setPeerState(td, 'PENDING');
    metrics.allowlistReloaded({ ok: true, peers: next.peers.length });
    await this.#deps
      .audit()
      ?.allowlistChanged({ version: next.version, ...(previousVersion ? { previousVersion } : {}), ...r });
    this.#loaded = true;
  }

  /** A reload the watcher refused: the previous allowlist stays in force, and everyone is told. */
  refuse(err: BrokerError, keptVersion: string | undefined): void {
    const { metrics, logger } = this.#deps;
    this.#refused = { code: err.code, message: err.message, at: this.#deps.clock.now() };
    metrics.allowlistReloaded({ ok: false });
    logger.error('allowlist refused; the previous one stays in force', {
      code: err.code,
      error: err.message,
      keptVersion,
    });
    this.#deps
      .audit()
      ?.allowlistRefused({ code: err.code, message: err.message, ...(keptVersion ? { keptVersion } : {}) })
      .catch((e: unknown) => {
        metrics.auditWriteFailed();
        logger.error('audit write failed', { record: 'allowlist-refused', error: String(e) });
      });
  }
}
