import { createHash } from 'node:crypto';
import { marshalBundle } from '../../core/bundle/codec.js';
import { bundlesEqual } from '../../core/bundle/diff.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { BundleError } from '../../errors.js';
import { defaultEndpointDeps, type EndpointDeps, sleep } from './deps.js';

/** Default poll period of the source SPIRE server: bounds how fast a rotation leaves the domain. */
export const DEFAULT_POLL_INTERVAL_MS = 250;
/** Default published `spiffe_refresh_hint`, seconds (SPIRE's bundle endpoint default, 5 min). */
export const DEFAULT_REFRESH_HINT_SECONDS = 300;
/** Below this hint SPIRE warns: its own federation client never polls faster than 1 min. */
export const MIN_RECOMMENDED_REFRESH_HINT_SECONDS = 60;
/** At or above this hint SPIRE warns: unscheduled rotations would take a day to propagate. */
export const MAX_RECOMMENDED_REFRESH_HINT_SECONDS = 24 * 60 * 60;
/** Default deadline of one GetBundle call. */
export const DEFAULT_FETCH_TIMEOUT_MS = 5_000;

/** Where the local bundle comes from: SPIRE's GetBundle (`SpireServerClient` implements this). */
export interface LocalBundleGetter {
  /** The current bundle of the local trust domain, with SPIRE's sequence number. */
  getBundle(opts?: { readonly signal?: AbortSignal }): Promise<TrustBundle>;
  /**
   * Only the bundle's sequence number (SPIRE: GetBundle with an output mask). When present, polls
   * between full reads ask just this and read the whole bundle only when it moved.
   */
  getBundleSequence?(opts?: { readonly signal?: AbortSignal }): Promise<bigint>;
}

/**
 * Longest time between two full reads of the source when sequence-only polls say nothing changed:
 * a change that left the sequence as it was (not one SPIRE makes to its own bundle) is still
 * published within this bound.
 */
export const DEFAULT_FULL_READ_INTERVAL_MS = 60_000;

/**
 * Poll period while nobody waits for the next version (no held long-poll): a change still reaches
 * every plain poller, output and status within this bound, at a fraction of the idle CPU.
 */
export const DEFAULT_IDLE_POLL_INTERVAL_MS = 5_000;

/** The reason a finished call's deadline timer and a woken idle sleep are cancelled with (a
 * preallocated value: `abort()` without one builds a DOMException with a stack every time). */
const CANCELLED = Object.freeze({ cancelled: true });

/** One published version of the local bundle document. Immutable. */
export interface PublishedBundle {
  /** The bundle as read from the source (its own refresh hint is not published). */
  readonly bundle: TrustBundle;
  /** The SPIFFE bundle document exactly as served (UTF-8 JSON, compact). */
  readonly body: Buffer;
  /** Strong entity tag of {@link PublishedBundle.body}: `"<base64url SHA-256>"`, quotes included. */
  readonly etag: string;
  /** The published `spiffe_refresh_hint`, seconds. */
  readonly refreshHint: number;
  /** Counts published versions from 1; increases by one on every change. */
  readonly version: number;
  /** When this version was first published, ms since the epoch (injected clock). */
  readonly publishedAt: number;
}

/** What one poll of the source did. */
export type PollOutcome =
  | { readonly result: 'changed'; readonly published: PublishedBundle }
  | { readonly result: 'unchanged'; readonly published: PublishedBundle }
  | { readonly result: 'error'; readonly error: unknown };

/** Options of {@link LocalBundle}. */
export interface LocalBundleOptions {
  readonly source: LocalBundleGetter;
  /** The local trust domain; a source answer for another domain is refused. */
  readonly trustDomain: TrustDomain;
  /**
   * Poll period while a client waits for the next version ({@link LocalBundle.watch}, e.g. a peer
   * broker's held long-poll), ms. Default {@link DEFAULT_POLL_INTERVAL_MS}.
   */
  readonly pollIntervalMs?: number;
  /**
   * Poll period while nobody waits, ms (at least `pollIntervalMs`). Default
   * {@link DEFAULT_IDLE_POLL_INTERVAL_MS}.
   */
  readonly idlePollIntervalMs?: number;
  /** Published `spiffe_refresh_hint`, seconds (overrides the source's). Default 300. */
  readonly refreshHintSeconds?: number;
  /** Deadline of one GetBundle call, ms. Default {@link DEFAULT_FETCH_TIMEOUT_MS}. */
  readonly fetchTimeoutMs?: number;
  /**
   * With a source that reads sequence numbers alone: the longest time between full reads, ms.
   * Default {@link DEFAULT_FULL_READ_INTERVAL_MS}.
   */
  readonly fullReadIntervalMs?: number;
  /** Called after every poll (metrics hook). */
  readonly onPoll?: (outcome: PollOutcome) => void;
  readonly deps?: Partial<EndpointDeps>;
}

/** Strong ETag of a body: quoted base64url SHA-256 (RFC 9110 §8.8.3). */
export function entityTag(body: Uint8Array): string {
  return `"${createHash('sha256').update(body).digest('base64url')}"`;
}

/**
 * The local trust domain's bundle as the endpoint publishes it: polled from SPIRE (GetBundle)
 * every {@link LocalBundleOptions.pollIntervalMs} and on demand ({@link LocalBundle.refresh}),
 * serialized once per change with the configured refresh hint, with a strong ETag.
 *
 * The published document changes only when the bundle's content does (authorities or sequence;
 * authority order is not significant). A failed poll keeps the last good document and is reported
 * through the logger and `onPoll`.
 *
 * @example
 * const local = new LocalBundle({ source: spireClient, trustDomain: td });
 * void local.run(signal);
 * const doc = await local.ready(signal);
 */
export class LocalBundle {
  readonly trustDomain: TrustDomain;
  readonly refreshHintSeconds: number;
  readonly pollIntervalMs: number;
  readonly idlePollIntervalMs: number;
  readonly #source: LocalBundleGetter;
  readonly #fullReadIntervalMs: number;
  /** Clients waiting for the next version ({@link watch}). */
  #watchers = 0;
  /** Cuts the current idle sleep short (set while sleeping at the idle cadence). */
  #wake: (() => void) | undefined;
  /** When the source was last read in full (injected clock, ms). */
  #lastFullRead = Number.NEGATIVE_INFINITY;
  readonly #fetchTimeoutMs: number;
  readonly #onPoll: ((outcome: PollOutcome) => void) | undefined;
  readonly #deps: EndpointDeps;
  readonly #listeners = new Set<(doc: PublishedBundle) => void>();
  #current: PublishedBundle | undefined;
  #inFlight: Promise<PollOutcome> | undefined;
  #queued: Promise<PollOutcome> | undefined;

  constructor(opts: LocalBundleOptions) {
    const hint = opts.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS;
    if (!Number.isSafeInteger(hint) || hint <= 0) {
      throw new TypeError(`refreshHintSeconds must be a positive integer, got ${hint}`);
    }
    const interval = opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    if (!Number.isFinite(interval) || interval <= 0) {
      throw new TypeError(`pollIntervalMs must be a positive number, got ${interval}`);
    }
    this.trustDomain = opts.trustDomain;
    this.refreshHintSeconds = hint;
    this.pollIntervalMs = interval;
    const idle = opts.idlePollIntervalMs ?? Math.max(DEFAULT_IDLE_POLL_INTERVAL_MS, interval);
    if (!Number.isFinite(idle) || idle < interval) {
      throw new TypeError(`idlePollIntervalMs must be at least pollIntervalMs (${interval}), got ${idle}`);
    }
    this.idlePollIntervalMs = idle;
    this.#source = opts.source;
    this.#fetchTimeoutMs = opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    this.#fullReadIntervalMs = opts.fullReadIntervalMs ?? DEFAULT_FULL_READ_INTERVAL_MS;
    this.#onPoll = opts.onPoll;
    this.#deps = defaultEndpointDeps(opts.deps);
    // Same thresholds and reasons as SPIRE's server config (federation.bundle_endpoint.refresh_hint).
    if (hint < MIN_RECOMMENDED_REFRESH_HINT_SECONDS) {
      this.#deps.logger.warn(
        'bundle endpoint refresh hint is below 1 minute; SPIRE peers will not refresh more often than once a minute',
        { refreshHintSeconds: hint },
      );
    } else if (hint >= MAX_RECOMMENDED_REFRESH_HINT_SECONDS) {
      this.#deps.logger.warn(
        'bundle endpoint refresh hint is 24 hours or more; unscheduled rotations would take that long to reach peers (e.g. use 5m)',
        { refreshHintSeconds: hint },
      );
    }
  }

  /** The document being served, or undefined before the first successful poll. */
  current(): PublishedBundle | undefined {
    return this.#current;
  }

  /**
   * Calls `listener` with every new version (not the current one). Listeners run synchronously
   * in publication order; one that throws is logged and does not stop the others.
   * @returns a function that removes the listener.
   */
  subscribe(listener: (doc: PublishedBundle) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Reads the source now. Concurrent calls share work: a call made while a poll is running waits
   * for it and then for one more poll started after it, so the answer always reflects a read that
   * began after the call.
   * @throws the source's error when this read failed (the previous document stays published).
   */
  async refresh(): Promise<PublishedBundle> {
    const outcome = await this.#schedulePoll();
    if (outcome.result === 'error') throw outcome.error;
    return outcome.published;
  }

  /** Resolves with the first published document (at once if there is one). */
  ready(signal?: AbortSignal): Promise<PublishedBundle> {
    const cur = this.#current;
    if (cur) return Promise.resolve(cur);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        unsubscribe();
        reject(signal?.reason ?? new Error('aborted'));
      };
      const unsubscribe = this.subscribe((doc) => {
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        resolve(doc);
      });
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Polls until `signal` aborts: once at start, then every poll interval after each poll ends. */
  /**
   * A client waits for the next version (a held long-poll): the source is polled every
   * `pollIntervalMs` until every such client is done, and an idle sleep in progress is cut short.
   * @returns the function to call once, when this client stops waiting.
   */
  watch(): () => void {
    this.#watchers++;
    this.#wake?.();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#watchers--;
    };
  }

  /** Clients waiting for the next version now. */
  watchers(): number {
    return this.#watchers;
  }

  async run(signal: AbortSignal): Promise<void> {
    const clock = this.#deps.clock;
    while (!signal.aborted) {
      await this.#schedulePoll();
      const polled = clock.now();
      if (this.#watchers > 0 || this.idlePollIntervalMs === this.pollIntervalMs) {
        if (!(await sleep(clock, this.pollIntervalMs, signal))) break;
        continue;
      }
      // Idle cadence; a client starting to wait wakes it, and the next poll comes at the fast
      // cadence from the last one.
      const woken = new AbortController();
      this.#wake = () => woken.abort(CANCELLED);
      try {
        await sleep(clock, this.idlePollIntervalMs, AbortSignal.any([signal, woken.signal]));
      } finally {
        this.#wake = undefined;
      }
      if (signal.aborted) break;
      const rest = this.pollIntervalMs - (clock.now() - polled);
      if (rest > 0 && !(await sleep(clock, rest, signal))) break;
    }
  }

  #schedulePoll(): Promise<PollOutcome> {
    if (!this.#inFlight) {
      this.#inFlight = this.#poll().finally(() => {
        this.#inFlight = undefined;
      });
      return this.#inFlight;
    }
    if (!this.#queued) {
      const running = this.#inFlight;
      this.#queued = running.then(() => {
        this.#queued = undefined;
        return this.#schedulePoll();
      });
    }
    return this.#queued;
  }

  async #poll(): Promise<PollOutcome> {
    let outcome: PollOutcome;
    try {
      // Only awaited when a sequence-only read applies: otherwise the full read starts at once.
      const unchanged = this.#sequenceProbeDue() ? await this.#sequenceUnchanged() : undefined;
      if (unchanged) outcome = { result: 'unchanged', published: unchanged };
      else {
        const bundle = await this.#fetch();
        this.#lastFullRead = this.#deps.clock.now();
        outcome = this.#publish(bundle);
      }
    } catch (error) {
      outcome = { result: 'error', error };
      this.#deps.logger.warn('could not read the local bundle; still serving the last good one', {
        error: error instanceof Error ? error.message : String(error),
        code: (error as { code?: unknown } | null)?.code,
        servingVersion: this.#current?.version,
      });
    }
    try {
      this.#onPoll?.(outcome);
    } catch (err) {
      this.#deps.logger.error('onPoll hook threw', { error: String(err) });
    }
    return outcome;
  }

  /**
   * The cheap poll: when the source reads sequence numbers alone, a full read was recent, and the
   * published bundle has a sequence (SPIRE's start at 1), asks only the sequence; the published
   * document when it did not move, undefined when a full read is due.
   */
  #sequenceProbeDue(): boolean {
    const cur = this.#current;
    return (
      this.#source.getBundleSequence !== undefined &&
      cur !== undefined &&
      cur.bundle.sequence !== 0n &&
      this.#deps.clock.now() - this.#lastFullRead < this.#fullReadIntervalMs
    );
  }

  async #sequenceUnchanged(): Promise<PublishedBundle | undefined> {
    const cur = this.#current!;
    const source = this.#source;
    const sequence = await this.#withDeadline((signal) => source.getBundleSequence!({ signal }));
    return sequence === cur.bundle.sequence ? cur : undefined;
  }

  /** Runs one source call with the fetch deadline. */
  async #withDeadline<T>(call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const stopTimer = new AbortController();
    void sleep(this.#deps.clock, this.#fetchTimeoutMs, stopTimer.signal).then((elapsed) => {
      if (elapsed) ac.abort(new Error(`GetBundle did not answer within ${this.#fetchTimeoutMs} ms`));
    });
    try {
      return await call(ac.signal);
    } finally {
      stopTimer.abort(CANCELLED);
    }
  }

  async #fetch(): Promise<TrustBundle> {
    const bundle = await this.#withDeadline((signal) => this.#source.getBundle({ signal }));
    // SPIFFE Federation §4.2: a bundle is always bound to its own trust domain.
    if (!bundle.trustDomain.equals(this.trustDomain)) {
      throw new BundleError(
        'ERR_BUNDLE_TRUST_DOMAIN_MISMATCH',
        `the source returned the bundle of "${bundle.trustDomain.name}", expected "${this.trustDomain.name}"`,
      );
    }
    return bundle;
  }

  #publish(bundle: TrustBundle): PollOutcome {
    const cur = this.#current;
    // The source's own hint is never published (it is overridden), so it does not count as a change.
    if (cur && bundlesEqual(cur.bundle, bundle, { refreshHint: false, sequence: true })) {
      return { result: 'unchanged', published: cur };
    }
    // SPIFFE Trust Domain and Bundle §4.1.1 / §4.1.2: spiffe_sequence is SPIRE's sequence number,
    // spiffe_refresh_hint the configured value (as SPIRE's own endpoint does).
    const body = Buffer.from(marshalBundle(bundle, { refreshHint: this.refreshHintSeconds }), 'utf8');
    const published: PublishedBundle = Object.freeze({
      bundle,
      body,
      etag: entityTag(body),
      refreshHint: this.refreshHintSeconds,
      version: (cur?.version ?? 0) + 1,
      publishedAt: this.#deps.clock.now(),
    });
    this.#current = published;
    this.#deps.logger.info('local bundle published', {
      version: published.version,
      sequence: bundle.sequence.toString(),
      x509Authorities: bundle.x509Authorities.length,
      jwtAuthorities: bundle.jwtAuthorities.size,
      etag: published.etag,
    });
    for (const listener of [...this.#listeners]) {
      try {
        listener(published);
      } catch (err) {
        this.#deps.logger.error('bundle change listener threw', { error: String(err) });
      }
    }
    return { result: 'changed', published };
  }
}
