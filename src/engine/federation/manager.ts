import { effectiveRefreshHint } from '../../core/bundle/refresh.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { evaluatePeerBundle, resetSequenceBaseline } from '../../core/policy/evaluate.js';
import {
  initialPeerState,
  type PeerState as Lifecycle,
  type PeerStatus as LifecycleStatus,
  nextPeerState,
  type PeerEvent,
} from '../../core/policy/peer-state.js';
import { type BrokerError, RuntimeError } from '../../errors.js';
import type { Clock } from '../../platform/clock.js';
import type { Allowlist, PeerConfig } from '../config/types.js';
import type { FederatedBundleStore } from './bundle-store.js';
import { FetchSlots } from './fetch-slots.js';
import { type PeerDecision, type PeerFetcher, type PeerFetchOutcome, PeerUpdater } from './peer-updater.js';

/** A peer's lifecycle state, decided by the pure state machine in src/core/policy/peer-state.ts. */
export type PeerState = LifecycleStatus;

/** What the manager knows about one peer, for status, metrics and readiness. */
export interface PeerStatus {
  readonly trustDomain: string;
  readonly state: PeerState;
  /** The coded reason behind a non-ACTIVE state (or the last refusal), if any. */
  readonly reason?: { readonly code: string; readonly message: string };
  readonly sequence?: bigint;
  readonly refreshHint?: number;
  readonly lastAttempt?: number;
  readonly lastSuccess?: number;
  readonly nextRefresh?: number;
  readonly consecutiveFailures: number;
  /** The URL that answered last. */
  readonly url?: string;
  readonly longPoll: boolean;
  /** When the current bundle was accepted (ms). */
  readonly acceptedAt?: number;
  /**
   * Where the held bundle came from: `fetched` (from the peer since start), `state` (the
   * last-known-good file), `spire:<server>` (re-read from a SPIRE server because the state file
   * was lost), or `none` (no bundle held: what SPIRE holds for it is left untouched).
   */
  readonly bundleOrigin: BundleOrigin;
  /** The persisted `spiffe_sequence` high-water mark in force for this peer (decimal). */
  readonly sequenceFloor?: bigint;
  /** For a peer removed from the allowlist: whether the broker held a bundle of it then. */
  readonly hadBundle?: boolean;
}

/** Where a held bundle came from (see {@link PeerStatus.bundleOrigin}). */
export type BundleOrigin = 'fetched' | 'state' | `spire:${string}` | 'none';

/** What survived a restart for one peer (see {@link FederationManager.restore}). */
export interface RestoredPeer {
  readonly trustDomain: string;
  /** The last-known-good bundle, when one loaded (put into the store). */
  readonly bundle?: TrustBundle;
  /** Where `bundle` came from. */
  readonly origin?: Exclude<BundleOrigin, 'fetched' | 'none'>;
  /** The persisted `spiffe_sequence` high-water mark. */
  readonly sequenceFloor?: bigint;
}

/**
 * Decides on a candidate bundle. `sequenceFloor` is the persisted high-water mark in force (absent
 * after an operator reset); the default is the pure policy {@link evaluatePeerBundle}.
 */
export type PeerEvaluator = (
  peer: PeerConfig,
  current: TrustBundle | undefined,
  candidate: TrustBundle,
  sequenceFloor: bigint | undefined,
) => PeerDecision;

/** {@link evaluatePeerBundle} as a {@link PeerEvaluator}. */
export const defaultPeerEvaluator: PeerEvaluator = (peer, current, candidate, sequenceFloor) => {
  const d = evaluatePeerBundle({ peer, current, candidate, sequenceFloor });
  return d.accepted ? { accepted: true, changed: d.changed } : { accepted: false, error: d.error };
};

/** Events the manager reports (audit, metrics, logs). */
export interface FederationObserver {
  accepted(
    peer: PeerConfig,
    bundle: TrustBundle,
    previous: TrustBundle | undefined,
    outcome: PeerFetchOutcome,
  ): void;
  refused(peer: PeerConfig, error: BrokerError): void;
  failed(peer: PeerConfig, error: BrokerError, durationMs: number): void;
  fetched(
    peer: PeerConfig,
    result: 'ok' | 'unchanged' | 'refused' | 'error',
    reason: string,
    durationMs: number,
  ): void;
  revoked(trustDomain: string, reason: 'allowlist-removed'): void;
  /** A last-known-good bundle that survived a restart was put back ({@link FederationManager.restore}). */
  restored(trustDomain: string, bundle: TrustBundle, origin: Exclude<BundleOrigin, 'fetched' | 'none'>): void;
  stateChanged(trustDomain: string, from: PeerState | undefined, to: PeerState): void;
}

export interface FederationManagerDeps {
  readonly clock: Clock;
  readonly fetcher: PeerFetcher;
  /** Policy on a candidate bundle; default {@link defaultPeerEvaluator}. */
  readonly evaluate?: PeerEvaluator;
  /** The broker's live set of held federated bundles. */
  readonly store: FederatedBundleStore;
  /**
   * Persist an accepted bundle (last-known-good and its sequence high-water mark) before it
   * becomes current. When it throws the bundle is NOT taken: the peer is reported failing with
   * `ERR_STATE_WRITE` and fetched again with backoff — a bundle whose mark did not reach the disk
   * could otherwise be rolled back after a restart.
   */
  readonly persist: (bundle: TrustBundle, meta: { etag?: string }) => Promise<void>;
  /** Forget a peer's persisted bundle once its relationship ends. */
  readonly forget: (trustDomain: string) => Promise<void>;
  /** Persist an operator's reset of a peer's sequence high-water mark (to 0). */
  readonly persistReset?: (trustDomain: string) => Promise<void>;
  readonly observer?: Partial<FederationObserver>;
  readonly random?: () => number;
  /** A peer is STALE after this many effective refresh hints without a successful answer. Default 3. */
  readonly staleAfterHints?: number;
  /** FAILING after this many consecutive failures outside the fresh window. Default 3. */
  readonly failingAfter?: number;
  readonly longPollSeconds?: number;
  /**
   * Most fetches in flight at once, long-polls (which mostly wait) not counted. Default
   * {@link DEFAULT_MAX_CONCURRENT_FETCHES}.
   */
  readonly maxConcurrentFetches?: number;
  readonly logger?: { warn(msg: string, fields?: Record<string, unknown>): void };
}

/**
 * Default bound on concurrent (non-long-poll) fetches: enough to keep a cold start of thousands of
 * peers quick, few enough that their TLS handshakes do not pile up in memory.
 */
export const DEFAULT_MAX_CONCURRENT_FETCHES = 32;

interface Tracked {
  peer: PeerConfig;
  updater: PeerUpdater;
  stop: AbortController;
  done: Promise<void>;
  lastAttempt?: number;
  attemptStarted?: number;
  lastSuccess?: number;
  nextRefresh?: number;
  lifecycle: Lifecycle;
  url?: string;
  longPoll: boolean;
  acceptedAt?: number;
}

/**
 * Reconciles the allowlist against running peer updaters — start, update, stop — and owns the
 * per-peer status. Accepted bundles are persisted, then put into the shared
 * {@link FederatedBundleStore}, which the SPIRE syncs, the verify API and the ConfigMap sink follow.
 * Removing a peer from the allowlist is revocation: its bundle leaves the store (and so every SPIRE
 * server it was written to) and its persisted copy is forgotten.
 */
export class FederationManager {
  readonly #deps: FederationManagerDeps;
  readonly #fetcher: PeerFetcher;
  readonly #peers = new Map<string, Tracked>();
  readonly #revoked = new Map<string, { at: number; hadBundle: boolean }>();
  /** Persisted sequence high-water marks, raised by every accepted bundle. */
  readonly #floors = new Map<string, bigint>();
  /** Peers whose sequence baseline an operator reset, until their next accepted bundle. */
  readonly #resets = new Set<string>();
  /** Where each held bundle came from, when not fetched since start. */
  readonly #origins = new Map<string, BundleOrigin>();
  #signal: AbortSignal | undefined;
  #allowlist: Allowlist | undefined;

  constructor(deps: FederationManagerDeps) {
    this.#deps = deps;
    const slots = new FetchSlots(deps.maxConcurrentFetches ?? DEFAULT_MAX_CONCURRENT_FETCHES);
    this.#fetcher = {
      // A long-poll holds its connection for up to a minute waiting for a change: only one-shot
      // fetches share the slots.
      fetch: (peer, opts) =>
        opts.waitSeconds !== undefined
          ? deps.fetcher.fetch(peer, opts)
          : slots.run(() => deps.fetcher.fetch(peer, opts), opts.signal),
    };
  }

  get allowlist(): Allowlist | undefined {
    return this.#allowlist;
  }

  /** Peers currently allowlisted. */
  peers(): PeerConfig[] {
    return [...this.#peers.values()].map((t) => t.peer);
  }

  /** The allowlist entry of one trust domain, without listing every peer. */
  peer(trustDomain: string): PeerConfig | undefined {
    return this.#peers.get(trustDomain)?.peer;
  }

  /**
   * Applies an allowlist: starts updaters for new peers, updates changed ones, stops and revokes
   * removed ones. Safe to call before {@link run}; updaters start when it runs.
   */
  async apply(allowlist: Allowlist): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
    this.#allowlist = allowlist;
    const next = new Map(allowlist.peers.map((p) => [p.trustDomain.name, p]));
    const added: string[] = [];
    const changed: string[] = [];
    const removed: string[] = [];
    for (const [td, peer] of next) {
      const t = this.#peers.get(td);
      if (!t) {
        this.#revoked.delete(td);
        this.#start(peer);
        added.push(td);
      } else if (!samePeer(t.peer, peer)) {
        t.peer = peer;
        t.updater.update(peer);
        changed.push(td);
      } else {
        // Settings the updater does not use (relay, oidcIssuer, probe) take effect at once.
        t.peer = peer;
      }
    }
    for (const [td, t] of this.#peers) {
      if (next.has(td)) continue;
      t.stop.abort();
      this.#peers.delete(td);
      removed.push(td);
      // SPIFFE Federation §6.3: ending a relationship deletes the stored bundle and propagates it.
      const hadBundle = this.#deps.store.get(td) !== undefined;
      this.#deps.store.delete(td);
      this.#floors.delete(td);
      this.#resets.delete(td);
      this.#origins.delete(td);
      this.#revoked.set(td, { at: this.#deps.clock.now(), hadBundle });
      this.#deps.observer?.stateChanged?.(td, t.lifecycle.status, 'REVOKED');
      this.#deps.observer?.revoked?.(td, 'allowlist-removed');
      await this.#deps.forget(td).catch((err: unknown) =>
        this.#deps.logger?.warn('could not forget a revoked peer state file', {
          trustDomain: td,
          err: String(err),
        }),
      );
    }
    return { added, removed, changed };
  }

  /**
   * Seeds what survived a restart, before {@link apply}: last-known-good bundles go into the store
   * (and so to SPIRE before any fetch completes) and persisted high-water marks guard every later
   * candidate against rollback, even for a peer whose bundle file was lost.
   */
  restore(peers: readonly RestoredPeer[]): void {
    for (const p of peers) {
      if (p.sequenceFloor !== undefined) this.#floors.set(p.trustDomain, p.sequenceFloor);
      if (p.bundle) {
        this.#deps.store.set(p.bundle);
        this.#origins.set(p.trustDomain, p.origin ?? 'state');
        this.#deps.observer?.restored?.(p.trustDomain, p.bundle, p.origin ?? 'state');
      }
    }
  }

  /**
   * An operator's explicit reset of a peer's `spiffe_sequence` baseline (the peer rebuilt its trust
   * domain and restarted its sequence): the persisted mark goes to 0, the next bundle is accepted
   * whatever its sequence, and the peer is fetched at once. The caller checks the allowlist and
   * audits.
   */
  async resetSequence(trustDomain: string): Promise<void> {
    await this.#deps.persistReset?.(trustDomain);
    this.#floors.set(trustDomain, 0n);
    this.#resets.add(trustDomain);
    this.refreshNow(trustDomain);
  }

  /** Asks every updater (or one) to fetch now. */
  refreshNow(trustDomain?: string): void {
    for (const [td, t] of this.#peers) if (!trustDomain || td === trustDomain) t.updater.refreshNow();
  }

  /** Runs the updaters until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    for (const t of this.#peers.values()) this.#launch(t);
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    for (const t of this.#peers.values()) t.stop.abort();
    await Promise.allSettled([...this.#peers.values()].map((t) => t.done));
  }

  /**
   * Allowlisted peers whose first bundle is still on its way: never fetched successfully, not
   * refused, and at most one failed fetch (the quick retry of a fetch that failed under a cold
   * start's load usually succeeds; a peer that is really down stops counting at its second
   * failure, seconds later). All of them during a cold start. The SPIRE syncs hold their writes
   * while this is above zero so a cold start goes out in a few large batches (bounded by their
   * `maxSettleMs`).
   */
  awaitingFirstOutcome(): number {
    let n = 0;
    for (const t of this.#peers.values()) {
      const l = t.lifecycle;
      if (l.status !== 'PENDING' || l.consecutiveFailures > 1) continue;
      if (l.lastError === undefined || l.lastError.code.startsWith('ERR_FETCH_')) n++;
    }
    return n;
  }

  /** Status of every allowlisted peer, plus recently revoked ones, sorted by trust domain. */
  status(): PeerStatus[] {
    const now = this.#deps.clock.now();
    const out: PeerStatus[] = [];
    for (const [td, t] of this.#peers) out.push(this.#statusOf(td, t, now));
    for (const [td, r] of this.#revoked) {
      out.push({
        trustDomain: td,
        state: 'REVOKED',
        reason: {
          code: 'ERR_PEER_REMOVED',
          message: r.hadBundle
            ? 'removed from the allowlist: its bundle left the broker and is deleted from the SPIRE servers'
            : 'removed from the allowlist: no bundle of it was held',
        },
        consecutiveFailures: 0,
        longPoll: false,
        bundleOrigin: 'none',
        hadBundle: r.hadBundle,
      });
    }
    return out.sort((a, b) => (a.trustDomain < b.trustDomain ? -1 : 1));
  }

  /** Feeds one event (or a tick) to the peer's state machine and reports a state change. */
  #event(td: string, t: Tracked, event: PeerEvent): void {
    const prev = t.lifecycle.status;
    t.lifecycle = nextPeerState(t.lifecycle, event, this.#deps.clock.now(), {
      ...(this.#deps.staleAfterHints !== undefined ? { staleAfterHints: this.#deps.staleAfterHints } : {}),
      ...(this.#deps.failingAfter !== undefined ? { failingAfter: this.#deps.failingAfter } : {}),
      ...(t.peer.refresh.maxHintSeconds !== undefined
        ? { maxHintSeconds: t.peer.refresh.maxHintSeconds }
        : {}),
    });
    if (t.lifecycle.status !== prev) this.#deps.observer?.stateChanged?.(td, prev, t.lifecycle.status);
  }

  #statusOf(td: string, t: Tracked, now: number): PeerStatus {
    void now;
    this.#event(td, t, { type: 'tick' });
    const bundle = this.#deps.store.get(td);
    const l = t.lifecycle;
    const reason = l.reason ?? (l.consecutiveFailures > 0 ? l.lastError : undefined);
    return {
      trustDomain: td,
      state: l.status,
      ...(reason ? { reason } : {}),
      ...(bundle ? { sequence: bundle.sequence, refreshHint: bundle.refreshHint } : {}),
      ...(t.lastAttempt !== undefined ? { lastAttempt: t.lastAttempt } : {}),
      ...(l.lastSuccessAt !== undefined ? { lastSuccess: l.lastSuccessAt } : {}),
      ...(t.nextRefresh !== undefined ? { nextRefresh: t.nextRefresh } : {}),
      ...(t.url !== undefined ? { url: t.url } : {}),
      ...(t.acceptedAt !== undefined ? { acceptedAt: t.acceptedAt } : {}),
      consecutiveFailures: l.consecutiveFailures,
      longPoll: t.longPoll,
      bundleOrigin: bundle ? (this.#origins.get(td) ?? 'fetched') : 'none',
      ...(this.#floors.has(td) ? { sequenceFloor: this.#floors.get(td)! } : {}),
    };
  }

  #start(peer: PeerConfig): void {
    const td = peer.trustDomain.name;
    const stop = new AbortController();
    const { clock, store, observer } = this.#deps;
    const held = store.get(td);
    const t: Tracked = {
      peer,
      stop,
      longPoll: false,
      done: Promise.resolve(),
      updater: undefined as unknown as PeerUpdater,
      lifecycle: initialPeerState(clock.now(), held ? hintOf(held, peer) : undefined),
    };
    const success = (outcome: PeerFetchOutcome, bundle: TrustBundle | undefined): void => {
      t.url = outcome.url;
      t.longPoll = outcome.supportsLongPoll;
      const b = bundle ?? store.get(td);
      this.#event(td, t, {
        type: 'fetch-succeeded',
        hintSeconds: b ? hintOf(b, t.peer) : 300,
        empty: b?.isEmpty() ?? false,
      });
    };
    t.updater = new PeerUpdater(peer, {
      clock,
      fetcher: this.#fetcher,
      evaluate: (p, current, candidate) => this.#evaluate(p, current, candidate),
      current: () => store.get(td),
      ...(this.#deps.random ? { random: this.#deps.random } : {}),
      ...(this.#deps.longPollSeconds !== undefined ? { longPollSeconds: this.#deps.longPollSeconds } : {}),
      observer: {
        attempt: () => {
          t.lastAttempt = clock.now();
          t.attemptStarted = t.lastAttempt;
        },
        accepted: async (p, bundle, outcome) => {
          const previous = store.get(td);
          // Persist first: a bundle is only current once it (and its sequence high-water mark)
          // would survive a crash. Otherwise it is not taken and the peer is fetched again.
          try {
            await this.#deps.persist(bundle, outcome.etag !== undefined ? { etag: outcome.etag } : {});
          } catch (err) {
            const error =
              err instanceof RuntimeError
                ? err
                : new RuntimeError(
                    'ERR_STATE_WRITE',
                    `could not persist the bundle: ${err instanceof Error ? err.message : String(err)}`,
                    { cause: err },
                  );
            this.#event(td, t, { type: 'fetch-failed', code: error.code, message: error.message });
            const d = clock.now() - (t.attemptStarted ?? clock.now());
            observer?.failed?.(p, error, d);
            observer?.fetched?.(p, 'error', error.code, d);
            return false;
          }
          if (bundle.sequence > (this.#floors.get(td) ?? 0n)) this.#floors.set(td, bundle.sequence);
          this.#resets.delete(td);
          this.#origins.delete(td);
          t.acceptedAt = clock.now();
          store.set(bundle);
          success(outcome, bundle);
          observer?.accepted?.(p, bundle, previous, outcome);
          observer?.fetched?.(p, 'ok', 'none', clock.now() - (t.attemptStarted ?? clock.now()));
          return true;
        },
        unchanged: (p, outcome) => {
          success(outcome, undefined);
          observer?.fetched?.(p, 'unchanged', 'none', clock.now() - (t.attemptStarted ?? clock.now()));
        },
        refused: (p, error) => {
          // The peer answered (it is reachable) but what it said is refused: not a success.
          this.#event(td, t, { type: 'refused', code: error.code, message: error.message });
          observer?.refused?.(p, error);
          observer?.fetched?.(p, 'refused', error.code, clock.now() - (t.attemptStarted ?? clock.now()));
        },
        failed: (p, error) => {
          this.#event(td, t, { type: 'fetch-failed', code: error.code, message: error.message });
          t.longPoll = false;
          const d = clock.now() - (t.attemptStarted ?? clock.now());
          observer?.failed?.(p, error, d);
          observer?.fetched?.(p, 'error', error.code, d);
        },
        scheduled: (_p, at) => {
          t.nextRefresh = at;
        },
      },
    });
    this.#peers.set(td, t);
    if (this.#signal) this.#launch(t);
  }

  /** Policy with the persisted high-water mark and an operator's pending reset applied. */
  #evaluate(peer: PeerConfig, current: TrustBundle | undefined, candidate: TrustBundle): PeerDecision {
    const td = peer.trustDomain.name;
    const reset = this.#resets.has(td);
    // After an operator's reset the sequence baseline is 0 until the next accepted bundle.
    const base = current && reset ? resetSequenceBaseline(current) : current;
    const floor = reset ? undefined : this.#floors.get(td);
    const d = (this.#deps.evaluate ?? defaultPeerEvaluator)(peer, base, candidate, floor);
    return d.accepted ? { accepted: true, changed: d.changed || base !== current } : d;
  }

  #launch(t: Tracked): void {
    const signal = this.#signal!;
    if (signal.aborted) return;
    const both = AbortSignal.any([signal, t.stop.signal]);
    t.done = t.updater.run(both).catch((err: unknown) => {
      this.#deps.logger?.warn('peer updater stopped unexpectedly', {
        trustDomain: t.peer.trustDomain.name,
        err: String(err),
      });
    });
  }
}

/** The effective refresh hint used for the stale window (seconds, > 0), capped per peer (§4.1). */
function hintOf(bundle: TrustBundle, peer: PeerConfig): number {
  return effectiveRefreshHint(bundle, {
    minHintSeconds: 1,
    defaultHintSeconds: 300,
    ...(peer.refresh.maxHintSeconds !== undefined ? { maxHintSeconds: peer.refresh.maxHintSeconds } : {}),
  });
}

function samePeer(a: PeerConfig, b: PeerConfig): boolean {
  const norm = (p: PeerConfig) =>
    JSON.stringify({
      urls: p.urls.map((u) => u.href),
      profile:
        p.profile.kind === 'https_spiffe'
          ? { ...p.profile, endpointSpiffeId: p.profile.endpointSpiffeId.toString() }
          : p.profile,
      refresh: p.refresh,
      keyPolicy: p.keyPolicy,
      targetServers: p.targetServers,
      allowEmptyBundle: p.allowEmptyBundle,
    });
  return norm(a) === norm(b);
}
