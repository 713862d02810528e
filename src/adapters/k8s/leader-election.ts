import { type Clock, isAbort } from '../../platform/clock.js';
import { type K8sLogger, nullLogger } from './deps.js';
import { isConflict, type KubeApi, type KubeObject, LEASES } from './kube-api.js';

/**
 * Leader election on a `coordination.k8s.io/v1` Lease, with the semantics of client-go's
 * leaderelection package (read to learn, written anew):
 *
 * - A candidate takes the lease when it is free (no holder) or expired: its record has not
 *   changed for `leaseDuration` *as measured on the candidate's own clock since it last saw it
 *   change* — never by comparing another replica's timestamps with ours, so clock skew between
 *   nodes does not matter.
 * - The leader renews every `retryPeriod`; if it cannot renew for `renewDeadline` (shorter than
 *   `leaseDuration`) it stops leading before anyone else may take over.
 * - Every write carries the resourceVersion it read: two candidates racing for a free lease
 *   cannot both win (one gets 409 Conflict).
 * - On shutdown the leader releases the lease (no holder, 1 s duration), so a standby takes over
 *   at its next retry instead of waiting for expiry.
 *
 * Only the leader writes to SPIRE and ConfigMaps; every replica serves the bundle endpoint, the
 * verify API and metrics.
 * @module
 */

/** The lease fields the elector reads and writes (`spec` of a Lease). */
export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** RFC 3339 with microseconds (`metav1.MicroTime`). */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

/** Outcome of one attempt, for tests and metrics. */
export type LeaseAttempt = 'acquired' | 'renewed' | 'held' | 'conflict' | 'error';

/** Hooks for tests and metrics. */
export interface LeaderElectorObserver {
  attempt?(result: LeaseAttempt, holder: string | undefined): void;
  released?(): void;
}

/** Options of {@link LeaderElector}. */
export interface LeaderElectorOptions {
  readonly api: KubeApi;
  readonly clock: Clock;
  readonly logger?: K8sLogger;
  /** Namespace and name of the Lease (created when absent). */
  readonly namespace: string;
  readonly name: string;
  /** This replica's unique identity, e.g. the pod name. */
  readonly identity: string;
  /** How long a lease stays valid without renewal, ms. Default 15 000. */
  readonly leaseDurationMs?: number;
  /** How long the leader keeps trying to renew before it stops leading, ms. Default 10 000. */
  readonly renewDeadlineMs?: number;
  /** Interval between attempts (acquire and renew), ms. Default 2 000. */
  readonly retryPeriodMs?: number;
  /** Release the lease when `run` is aborted while leading. Default true. */
  readonly releaseOnCancel?: boolean;
  readonly observer?: LeaderElectorObserver;
}

/** RFC 3339 with exactly six fractional digits, as `metav1.MicroTime` is written. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/**
 * Campaigns for a Lease and reports leadership.
 *
 * @example
 * const elector = new LeaderElector({ api, clock: systemClock, namespace: 'spire', name: 'spiffe-broker',
 *   identity: process.env.POD_NAME ?? hostname() });
 * elector.onLeadershipChange((leading) => log.info('leading', { leading }));
 * await Promise.all([elector.run(signal), elector.runWhileLeader(signal, (s) => sink.run(s))]);
 */
export class LeaderElector {
  readonly #o: LeaderElectorOptions;
  readonly #log: K8sLogger;
  readonly #leaseMs: number;
  readonly #renewMs: number;
  readonly #retryMs: number;
  readonly #listeners = new Set<(leading: boolean) => void>();
  #leading = false;
  #holder: string | undefined;
  /** The last record seen, and when (our clock) it last changed. */
  #observed: { key: string; at: number } | undefined;
  #lastRenew = 0;

  constructor(opts: LeaderElectorOptions) {
    this.#leaseMs = opts.leaseDurationMs ?? 15_000;
    this.#renewMs = opts.renewDeadlineMs ?? 10_000;
    this.#retryMs = opts.retryPeriodMs ?? 2_000;
    if (!(this.#leaseMs > this.#renewMs))
      throw new TypeError('leaseDurationMs must be greater than renewDeadlineMs');
    if (!(this.#renewMs > this.#retryMs))
      throw new TypeError('renewDeadlineMs must be greater than retryPeriodMs');
    if (this.#retryMs <= 0) throw new TypeError('retryPeriodMs must be positive');
    if (opts.identity === '') throw new TypeError('identity must not be empty');
    this.#o = opts;
    this.#log = opts.logger ?? nullLogger;
  }

  /** True while this replica holds the lease. */
  isLeader(): boolean {
    return this.#leading;
  }

  /** The holder last seen on the lease (possibly this replica), if any. */
  get leader(): string | undefined {
    return this.#holder;
  }

  /** Calls `listener(true|false)` on every change of leadership; returns unsubscribe. */
  onLeadershipChange(listener: (leading: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Campaigns and renews until `signal` aborts; then releases the lease if leading. */
  async run(signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        const now = this.#o.clock.now();
        const result = await this.#attempt(now, signal);
        this.#o.observer?.attempt?.(result, this.#holder);
        if (signal.aborted) break;
        if (result === 'acquired' || result === 'renewed') {
          this.#lastRenew = now;
          this.#set(true);
        } else if (this.#leading) {
          const lost = result === 'held' || this.#o.clock.now() - this.#lastRenew >= this.#renewMs;
          if (lost) {
            this.#log.warn('leadership lost', { lease: this.#o.name, holder: this.#holder });
            this.#set(false);
          }
        }
        await this.#o.clock.sleep(this.#retryMs, signal);
      }
    } catch (err) {
      if (!signal.aborted && !isAbort(err, signal)) throw err;
    } finally {
      if (this.#leading) {
        this.#set(false);
        if (this.#o.releaseOnCancel ?? true) await this.#release();
      }
    }
  }

  /**
   * Runs `task` whenever this replica leads, with a signal that aborts when leadership is lost or
   * `signal` aborts; a task that ends while still leading is restarted after `retryPeriod`.
   * Resolves when `signal` aborts.
   */
  async runWhileLeader(
    signal: AbortSignal,
    task: (leaderSignal: AbortSignal) => Promise<void>,
  ): Promise<void> {
    while (!signal.aborted) {
      if (!this.#leading) {
        await new Promise<void>((resolve) => {
          const un = this.onLeadershipChange((l) => {
            if (l) done();
          });
          const done = (): void => {
            un();
            signal.removeEventListener('abort', done);
            resolve();
          };
          signal.addEventListener('abort', done, { once: true });
          if (this.#leading || signal.aborted) done();
        });
        continue;
      }
      const term = new AbortController();
      const stop = (): void => term.abort(signal.reason ?? new Error('leadership lost'));
      const un = this.onLeadershipChange((l) => {
        if (!l) stop();
      });
      signal.addEventListener('abort', stop, { once: true });
      try {
        await task(term.signal);
      } catch (err) {
        if (!term.signal.aborted) this.#log.error('leader task failed', { error: (err as Error).message });
      } finally {
        un();
        signal.removeEventListener('abort', stop);
      }
      if (!signal.aborted && this.#leading) {
        await this.#o.clock.sleep(this.#retryMs, signal).catch(() => {});
      }
    }
  }

  #set(leading: boolean): void {
    if (this.#leading === leading) return;
    this.#leading = leading;
    this.#log.info(leading ? 'became leader' : 'stopped leading', {
      lease: this.#o.name,
      identity: this.#o.identity,
    });
    for (const l of this.#listeners) {
      try {
        l(leading);
      } catch (err) {
        this.#log.error('leadership listener threw', { error: (err as Error).message });
      }
    }
  }

  async #attempt(now: number, signal: AbortSignal): Promise<LeaseAttempt> {
    const { api, namespace, name, identity } = this.#o;
    const durationSeconds = Math.ceil(this.#leaseMs / 1000);
    try {
      const lease = await api.get(LEASES, name, namespace, signal);
      if (!lease) {
        const spec: LeaseRecord = {
          holderIdentity: identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        };
        try {
          await api.create(LEASES, { metadata: { name, namespace }, spec }, signal);
        } catch (err) {
          if (isConflict(err)) return 'conflict';
          throw err;
        }
        this.#holder = identity;
        return 'acquired';
      }
      const record = (lease.spec ?? {}) as LeaseRecord;
      const key = JSON.stringify([
        record.holderIdentity,
        record.renewTime,
        record.acquireTime,
        record.leaseDurationSeconds,
      ]);
      if (this.#observed?.key !== key) this.#observed = { key, at: this.#o.clock.now() };
      const holder = record.holderIdentity || undefined;
      this.#holder = holder;
      const validFor = (record.leaseDurationSeconds ?? 0) * 1000;
      if (holder !== undefined && holder !== identity && this.#observed.at + validFor > now) return 'held';
      const mine = holder === identity;
      const spec: LeaseRecord = {
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: mine && record.acquireTime ? record.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: mine ? (record.leaseTransitions ?? 0) : (record.leaseTransitions ?? 0) + 1,
      };
      try {
        const written = await api.replace(LEASES, { ...lease, spec } as KubeObject, signal);
        const w = (written.spec ?? {}) as LeaseRecord;
        this.#observed = {
          key: JSON.stringify([w.holderIdentity, w.renewTime, w.acquireTime, w.leaseDurationSeconds]),
          at: this.#o.clock.now(),
        };
      } catch (err) {
        if (isConflict(err)) return 'conflict';
        throw err;
      }
      this.#holder = identity;
      return mine ? 'renewed' : 'acquired';
    } catch (err) {
      if (signal.aborted) throw err;
      this.#log.warn('lease attempt failed', { lease: name, error: (err as Error).message });
      return 'error';
    }
  }

  /** Gives the lease up: no holder, 1 s duration, so a standby takes it at its next attempt. */
  async #release(): Promise<void> {
    const { api, namespace, name, identity } = this.#o;
    try {
      const lease = await api.get(LEASES, name, namespace, AbortSignal.timeout(5_000));
      const record = (lease?.spec ?? {}) as LeaseRecord;
      if (!lease || record.holderIdentity !== identity) return;
      const now = microTime(this.#o.clock.now());
      const spec: LeaseRecord = {
        leaseDurationSeconds: 1,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: record.leaseTransitions ?? 0,
      };
      await api.replace(LEASES, { ...lease, spec } as KubeObject, AbortSignal.timeout(5_000));
      this.#o.observer?.released?.();
      this.#log.info('lease released', { lease: name, identity });
    } catch (err) {
      this.#log.warn('lease release failed; the standby takes over after expiry', {
        lease: name,
        error: (err as Error).message,
      });
    }
  }
}
