import { backoffDelay, nextRefreshDelay, type RefreshPolicy } from '../../core/bundle/refresh.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { BrokerError, FetchError } from '../../errors.js';
import { type Clock, isAbort } from '../../platform/clock.js';
import type { PeerConfig } from '../config/types.js';

/** What one fetch attempt returned (the daemon adapts the real fetcher to this shape). */
export type PeerFetchOutcome =
  | {
      readonly kind: 'bundle';
      readonly bundle: TrustBundle;
      readonly url: string;
      readonly etag?: string;
      /** The server honoured `Prefer: wait` (our change notification), so a long-poll can be held. */
      readonly supportsLongPoll: boolean;
    }
  | {
      readonly kind: 'not-modified';
      readonly url: string;
      readonly etag: string;
      readonly supportsLongPoll: boolean;
    };

/** The fetch capability a {@link PeerUpdater} needs. */
export interface PeerFetcher {
  fetch(
    peer: PeerConfig,
    opts: {
      /** The bundle used to authenticate an https_spiffe endpoint and to decide "unchanged". */
      readonly current?: TrustBundle;
      readonly etag?: string;
      /** Ask the server to hold the request up to this many seconds for a change. */
      readonly waitSeconds?: number;
      readonly signal: AbortSignal;
    },
  ): Promise<PeerFetchOutcome>;
}

/** Outcome of checking a fetched bundle against policy (see src/core/policy). */
export type PeerDecision =
  | { readonly accepted: true; readonly changed: boolean }
  | { readonly accepted: false; readonly error: BrokerError };

/** Callbacks through which an updater reports; the manager implements them. */
export interface PeerUpdaterObserver {
  attempt(peer: PeerConfig): void;
  /**
   * A new bundle passed policy. The updater waits for this before treating it as current;
   * `false` means it was not taken (it could not be persisted): the updater forgets its ETag and
   * retries with backoff.
   */
  accepted(peer: PeerConfig, bundle: TrustBundle, outcome: PeerFetchOutcome): Promise<boolean | undefined>;
  /** The peer answered and its bundle is unchanged (304, or identical content). */
  unchanged(peer: PeerConfig, outcome: PeerFetchOutcome): void;
  /** The peer answered with a bundle that policy refused (rollback, key policy, …). */
  refused(peer: PeerConfig, error: BrokerError): void;
  /** The fetch itself failed (network, TLS, status, parse). */
  failed(peer: PeerConfig, error: BrokerError): void;
  /** When the next attempt is due (ms since epoch). */
  scheduled(peer: PeerConfig, at: number): void;
}

export interface PeerUpdaterDeps {
  readonly clock: Clock;
  readonly fetcher: PeerFetcher;
  /** Policy: may this candidate replace the current bundle? */
  readonly evaluate: (
    peer: PeerConfig,
    current: TrustBundle | undefined,
    candidate: TrustBundle,
  ) => PeerDecision;
  /** The peer's current (last accepted) bundle, from the shared store. */
  readonly current: () => TrustBundle | undefined;
  readonly observer: PeerUpdaterObserver;
  /** Uniform [0, 1) for jitter. */
  readonly random?: () => number;
  /** How long a long-poll asks the server to hold, seconds (≤ 60). Default 55. */
  readonly longPollSeconds?: number;
  /** Backoff base after a failure, ms. Default 1000. */
  readonly backoffBaseMs?: number;
}

/**
 * Keeps one peer's bundle fresh: fetch → validate → report, then sleep until the next attempt.
 *
 * Schedule: when the peer supports the change notification (its endpoint honoured `Prefer: wait`),
 * the next request is a long-poll sent at once, so a rotation is seen within the round trip;
 * otherwise the pure refresh function decides (hint/4, clamped to the entry's bounds, jittered).
 * Failures back off exponentially from one second up to the normal interval — never faster than
 * that, never slower (SPIFFE Federation §6.2: retry at the next interval, not aggressively).
 * A failed or refused fetch never changes the current bundle.
 */
export class PeerUpdater {
  #peer: PeerConfig;
  readonly #deps: PeerUpdaterDeps;
  #etag: string | undefined;
  #longPoll = false;
  #failures = 0;
  #wake: AbortController | undefined;
  #started = 0;
  /** Whether this peer's support for change notification was probed since the last (re)start. */
  #probed = false;

  constructor(peer: PeerConfig, deps: PeerUpdaterDeps) {
    this.#peer = peer;
    this.#deps = deps;
  }

  get peer(): PeerConfig {
    return this.#peer;
  }

  /** Applies a changed allowlist entry and refreshes at once with it. */
  update(peer: PeerConfig): void {
    this.#peer = peer;
    this.#etag = undefined;
    this.#longPoll = false;
    this.#probed = false;
    this.refreshNow();
  }

  /** Cuts the current wait (or long-poll) short and fetches now. */
  refreshNow(): void {
    this.#wake?.abort(new WakeUp());
  }

  /** Runs until `signal` aborts. Never throws for peer problems; they go to the observer. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const wake = new AbortController();
      this.#wake = wake;
      const both = AbortSignal.any([signal, wake.signal]);
      let delay: number;
      try {
        delay = await this.#attempt(both);
      } catch (err) {
        if (signal.aborted) return;
        if (wake.signal.aborted) continue; // woken mid-fetch: start over with the new settings
        throw err;
      }
      const at = this.#deps.clock.now() + delay;
      this.#deps.observer.scheduled(this.#peer, at);
      if (delay <= 0) continue; // a long-poll: the held request is the wait
      try {
        await this.#deps.clock.sleep(delay, both);
      } catch (err) {
        if (signal.aborted) return;
        if (!wake.signal.aborted && !isAbort(err, both)) throw err;
      }
    }
  }

  /** One attempt; returns the delay before the next. */
  async #attempt(signal: AbortSignal): Promise<number> {
    const peer = this.#peer;
    const current = this.#deps.current();
    this.#deps.observer.attempt(peer);
    // The first conditional request after a fresh fetch doubles as a probe: a broker endpoint holds
    // it (and says so with Preference-Applied); a plain endpoint answers at once and is then
    // polled on its normal schedule.
    const holding = (this.#longPoll || !this.#probed) && this.#etag !== undefined && current !== undefined;
    if (holding) this.#probed = true;
    const waitSeconds = this.#deps.longPollSeconds ?? 55;
    this.#started = this.#deps.clock.now();
    let outcome: PeerFetchOutcome;
    try {
      outcome = await this.#deps.fetcher.fetch(peer, {
        ...(current ? { current } : {}),
        ...(this.#etag && current ? { etag: this.#etag } : {}),
        ...(holding ? { waitSeconds } : {}),
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw err;
      const error =
        err instanceof BrokerError
          ? err
          : new FetchError(
              'ERR_FETCH_CONNECT',
              `fetch failed: ${err instanceof Error ? err.message : String(err)}`,
              {
                cause: err,
              },
            );
      this.#failures++;
      this.#longPoll = false;
      this.#deps.observer.failed(peer, error);
      return this.#failureDelay(current);
    }
    this.#failures = 0;
    this.#longPoll = outcome.supportsLongPoll;
    // A held request answered with a new bundle without saying it was held says nothing about
    // support (the bundle had changed before the request arrived): probe again next time. Only a
    // 304 without Preference-Applied shows a server that ignores the wait.
    if (holding && !outcome.supportsLongPoll && outcome.kind === 'bundle') this.#probed = false;
    if (outcome.kind === 'not-modified') {
      // A "held" request answered 304 long before its wait ended: the server does not really
      // hold requests, so fall back to the normal schedule instead of spinning.
      if (holding && this.#deps.clock.now() - this.#started < (waitSeconds * 1000) / 2)
        this.#longPoll = false;
      this.#etag = outcome.etag;
      this.#deps.observer.unchanged(peer, outcome);
      return this.#successDelay(current);
    }
    const decision = this.#deps.evaluate(peer, current, outcome.bundle);
    if (!decision.accepted) {
      // A refused bundle must not be re-fetched as "not modified" next time: forget its ETag.
      this.#etag = undefined;
      this.#longPoll = false;
      this.#deps.observer.refused(peer, decision.error);
      return this.#failureDelay(current, true);
    }
    if (!decision.changed) {
      this.#etag = outcome.etag;
      this.#deps.observer.unchanged(peer, outcome);
      return this.#successDelay(current);
    }
    if ((await this.#deps.observer.accepted(peer, outcome.bundle, outcome)) === false) {
      // Not taken (it could not be persisted): fetch it again, with backoff, as after a failure.
      this.#etag = undefined;
      this.#longPoll = false;
      this.#failures++;
      return this.#failureDelay(current);
    }
    this.#etag = outcome.etag;
    return this.#successDelay(outcome.bundle);
  }

  #policy(): RefreshPolicy {
    return {
      divisor: 4,
      minHintSeconds: 0,
      defaultHintSeconds: 300,
      minIntervalSeconds: this.#peer.refresh.minIntervalSeconds,
      maxIntervalSeconds: this.#peer.refresh.maxIntervalSeconds,
      ...(this.#peer.refresh.maxHintSeconds !== undefined
        ? { maxHintSeconds: this.#peer.refresh.maxHintSeconds }
        : {}),
      jitter: 0.1,
    };
  }

  #successDelay(bundle: TrustBundle | undefined): number {
    // The long-poll itself is the wait: go again at once — but never more often than the entry's
    // minimum interval, so a peer that changes its bundle on every request cannot make us spin.
    if ((this.#longPoll || !this.#probed) && this.#etag !== undefined) {
      const elapsed = this.#deps.clock.now() - this.#started;
      return Math.max(0, this.#peer.refresh.minIntervalSeconds * 1000 - elapsed);
    }
    return nextRefreshDelay(bundle, this.#policy(), this.#deps.random);
  }

  #failureDelay(bundle: TrustBundle | undefined, refused = false): number {
    const normal = nextRefreshDelay(bundle, { ...this.#policy(), jitter: 0 });
    // A refusal is the peer's deliberate answer: wait a normal interval before asking again.
    if (refused) return normal;
    return Math.min(
      normal,
      backoffDelay(
        this.#failures,
        { baseMs: this.#deps.backoffBaseMs ?? 1000, maxMs: normal },
        this.#deps.random,
      ),
    );
  }
}

class WakeUp extends Error {
  override name = 'AbortError';
}
