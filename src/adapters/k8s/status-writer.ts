import { K8sError } from '../../errors.js';
import type { Clock } from '../../platform/clock.js';
import { type K8sLogger, nullLogger } from './deps.js';
import { FEDERATION_PEERS, isConflict, isNotFound, type KubeApi, type KubeObject } from './kube-api.js';
import { type FederationPeerStatus, jsonEqual, type StatusSnapshot, withRuntime } from './peer-status.js';

/**
 * Writes FederationPeer `status` through the status subresource, with optimistic concurrency: a
 * PUT carries the resourceVersion it was computed from; on 409 Conflict the object is read again
 * and the change recomputed (level-triggered: the mutation is a function of the current status,
 * never a blind overwrite). Unchanged status is not written, so steady state costs no writes.
 * @module
 */

/** Outcome of one status update. */
export type StatusWriteResult = 'written' | 'unchanged' | 'gone';

/** Options of {@link FederationPeerStatusWriter}. */
export interface FederationPeerStatusWriterOptions {
  readonly api: KubeApi;
  readonly clock: Clock;
  readonly logger?: K8sLogger;
  /**
   * Finds the FederationPeer that holds a trust domain (the CRD source's accepted object). Trust
   * domains with no FederationPeer (a file allowlist, a ClusterFederatedTrustDomain) are skipped.
   */
  readonly lookup: (trustDomain: string) => KubeObject | undefined;
  /** Attempts per object before giving up with `ERR_K8S_CONFLICT`. Default 5. */
  readonly maxAttempts?: number;
}

/**
 * Updates FederationPeer status; gate calls on leadership (only the leader writes).
 *
 * @example
 * const writer = new FederationPeerStatusWriter({ api, clock, lookup: (td) => source.objectFor(td) });
 * await writer.write({ peers: [{ trustDomain: 'partner.example', state: 'Ready', servers: [] }] });
 */
export class FederationPeerStatusWriter {
  readonly #o: FederationPeerStatusWriterOptions;
  readonly #log: K8sLogger;

  constructor(opts: FederationPeerStatusWriterOptions) {
    this.#o = opts;
    this.#log = opts.logger ?? nullLogger;
  }

  /**
   * Applies the daemon's snapshot to every FederationPeer it names. One object's failure does not
   * stop the others; the first failure is rethrown at the end.
   */
  async write(snapshot: StatusSnapshot, signal?: AbortSignal): Promise<Map<string, StatusWriteResult>> {
    const results = new Map<string, StatusWriteResult>();
    let firstError: unknown;
    for (const peer of snapshot.peers) {
      const obj = this.#o.lookup(peer.trustDomain);
      if (!obj) continue;
      try {
        const r = await this.update(obj, (status) => withRuntime(status, peer, this.#o.clock.now()), signal);
        results.set(peer.trustDomain, r);
      } catch (err) {
        if (signal?.aborted) throw err;
        this.#log.warn('FederationPeer status update failed', {
          name: obj.metadata.name,
          error: (err as Error).message,
        });
        firstError ??= err;
      }
    }
    if (firstError !== undefined) throw firstError;
    return results;
  }

  /**
   * Recomputes `status` with `mutate` from `start` (usually the cached object) and writes it,
   * re-reading and retrying on conflicts.
   * @throws K8sError `ERR_K8S_CONFLICT` after `maxAttempts` conflicts; other API errors as they come.
   */
  async update(
    start: KubeObject,
    mutate: (status: FederationPeerStatus | undefined, obj: KubeObject) => FederationPeerStatus,
    signal?: AbortSignal,
  ): Promise<StatusWriteResult> {
    const attempts = this.#o.maxAttempts ?? 5;
    let obj: KubeObject | undefined = start;
    for (let i = 0; i < attempts; i++) {
      if (!obj) return 'gone';
      const current = obj.status as FederationPeerStatus | undefined;
      const next = mutate(current, obj);
      if (jsonEqual(current ?? {}, next)) return 'unchanged';
      try {
        await this.#o.api.replaceStatus(FEDERATION_PEERS, { ...obj, status: next }, signal);
        return 'written';
      } catch (err) {
        if (isNotFound(err)) return 'gone';
        if (!isConflict(err)) throw err;
        this.#log.debug('FederationPeer status conflict; re-reading', {
          name: start.metadata.name,
          attempt: i + 1,
        });
        obj = await this.#o.api.get(FEDERATION_PEERS, start.metadata.name, undefined, signal);
      }
    }
    throw new K8sError(
      'ERR_K8S_CONFLICT',
      `FederationPeer ${start.metadata.name}: status update lost to concurrent writers ${attempts} times`,
    );
  }
}
