import type { BrokerError } from '../../errors.js';

/**
 * Rate limiting of repeated, identical reports (a peer refused for the same reason on every
 * fetch), so one hostile or broken peer cannot fill the disk through the log and the audit trail.
 *
 * Per key (peer × event × error code) the first report of an interval is passed on and the rest of
 * that interval are only counted; the next report passed on carries how many were suppressed. A
 * peer refused every second for a day therefore writes one record per minute (default interval)
 * instead of 86,400, and the count keeps the evidence. Time is read through an injected `now`.
 * @module
 */

/** Default {@link RepeatLimiterOptions.intervalMs}: one minute. */
export const DEFAULT_REPEAT_INTERVAL_MS = 60_000;
/** Default {@link RepeatLimiterOptions.maxKeys}. */
export const DEFAULT_REPEAT_MAX_KEYS = 10_000;

/** Options of {@link RepeatLimiter}. */
export interface RepeatLimiterOptions {
  /** Milliseconds since the epoch (inject the daemon's clock). */
  readonly now: () => number;
  /** Length of a key's window, ms. Default {@link DEFAULT_REPEAT_INTERVAL_MS}. */
  readonly intervalMs?: number;
  /**
   * Most keys tracked; the oldest window is dropped past it (its suppressed count is lost, never
   * a report). Default {@link DEFAULT_REPEAT_MAX_KEYS}. Keys are allowlisted peers × codes, so
   * this is a guard, not a working limit.
   */
  readonly maxKeys?: number;
}

/** What {@link RepeatLimiter.admit} decided. */
export type RepeatDecision =
  /** Pass the report on; `suppressed` identical reports were dropped since the last one passed. */
  | { readonly emit: true; readonly suppressed: number; readonly sinceMs: number | undefined }
  /** Drop it: an identical report was passed on less than one interval ago. */
  | { readonly emit: false };

interface Window {
  opened: number;
  suppressed: number;
}

/**
 * Counts repeated reports per key and says which to pass on.
 *
 * @example
 * const limiter = new RepeatLimiter({ now: () => clock.now() });
 * const d = limiter.admit(`${td}/refused/${err.code}`);
 * if (d.emit) log.warn('refused', { code: err.code, suppressed: d.suppressed });
 */
export class RepeatLimiter {
  readonly #now: () => number;
  readonly #intervalMs: number;
  readonly #maxKeys: number;
  /** Insertion order = order windows were opened (re-inserted on reopen). */
  readonly #windows = new Map<string, Window>();

  constructor(opts: RepeatLimiterOptions) {
    if (typeof opts?.now !== 'function') throw new TypeError('RepeatLimiter: now must be a function');
    this.#now = opts.now;
    this.#intervalMs = opts.intervalMs ?? DEFAULT_REPEAT_INTERVAL_MS;
    this.#maxKeys = opts.maxKeys ?? DEFAULT_REPEAT_MAX_KEYS;
    if (!(this.#intervalMs > 0)) throw new TypeError('RepeatLimiter: intervalMs must be > 0');
    if (!Number.isSafeInteger(this.#maxKeys) || this.#maxKeys < 1) {
      throw new TypeError('RepeatLimiter: maxKeys must be a positive integer');
    }
  }

  /** Decides on one report of `key`. */
  admit(key: string): RepeatDecision {
    const now = this.#now();
    const w = this.#windows.get(key);
    if (w && now - w.opened < this.#intervalMs) {
      w.suppressed++;
      return { emit: false };
    }
    const decision: RepeatDecision = {
      emit: true,
      suppressed: w?.suppressed ?? 0,
      sinceMs: w ? now - w.opened : undefined,
    };
    this.#windows.delete(key);
    this.#windows.set(key, { opened: now, suppressed: 0 });
    while (this.#windows.size > this.#maxKeys) {
      const oldest = this.#windows.keys().next().value as string;
      this.#windows.delete(oldest);
    }
    return decision;
  }

  /**
   * Windows that have closed with suppressed reports, removed from the limiter: report them (e.g.
   * on a periodic tick) so a peer that stopped misbehaving still has its count on record.
   */
  flush(): { key: string; suppressed: number; sinceMs: number }[] {
    const now = this.#now();
    const out: { key: string; suppressed: number; sinceMs: number }[] = [];
    for (const [key, w] of this.#windows) {
      if (now - w.opened < this.#intervalMs) continue;
      this.#windows.delete(key);
      if (w.suppressed > 0) out.push({ key, suppressed: w.suppressed, sinceMs: now - w.opened });
    }
    return out;
  }

  /** Forgets every key that starts with `prefix` (e.g. a peer that left the allowlist). */
  forget(prefix: string): void {
    for (const key of [...this.#windows.keys()]) if (key.startsWith(prefix)) this.#windows.delete(key);
  }

  /** Keys currently tracked. */
  get size(): number {
    return this.#windows.size;
  }
}

/** A peer as the federation observer names it (structurally a `PeerConfig`). */
interface PeerLike {
  readonly trustDomain: { readonly name: string };
}

/** The refusal and failure reports of a federation observer (structurally `FederationObserver`). */
export interface RepeatedReports<P extends PeerLike = PeerLike> {
  refused?(peer: P, error: BrokerError): void;
  failed?(peer: P, error: BrokerError, durationMs: number): void;
}

/**
 * A copy of `error` (same class and code) whose message starts with how many identical reports it
 * stands for — at the start, so a sink that cuts long messages keeps it. Bounding and escaping the
 * message is the sinks' job (AuditTrail, jsonLogger: untrusted-text.ts).
 */
function reported(error: BrokerError, suppressed: number, sinceMs: number | undefined): BrokerError {
  if (suppressed === 0) return error;
  const since = sinceMs === undefined ? '' : ` in the last ${Math.round(sinceMs / 1000)} s`;
  const note = `[${suppressed} identical report${suppressed === 1 ? '' : 's'} suppressed${since}] `;
  const Ctor = error.constructor as new (
    code: BrokerError['code'],
    message: string,
    options?: { cause?: unknown },
  ) => BrokerError;
  return new Ctor(error.code, note + error.message, { cause: error });
}

/**
 * Wraps the `refused` and `failed` reports of an observer (the log or the audit one) so that per
 * peer, event and error code at most one report per interval reaches it; the one that does says
 * how many were suppressed (a `[N identical reports suppressed in the last S s] ` prefix). The
 * sinks bound and escape the text (AuditTrail and jsonLogger use untrusted-text.ts). Other members of `observer` are returned unchanged. Give each wrapped observer its own limiter.
 *
 * @example
 * // daemon.ts: observer: composeObservers([limitRepeatedReports(logObserver, new RepeatLimiter({ now })), …])
 */
export function limitRepeatedReports<P extends PeerLike, O extends RepeatedReports<P>>(
  observer: O,
  limiter: RepeatLimiter,
): O {
  const key = (peer: P, event: string, error: BrokerError) =>
    `${peer.trustDomain.name}\u0000${event}\u0000${error.code}`;
  const out: O = { ...observer };
  const refused = observer.refused;
  if (refused) {
    out.refused = (peer: P, error: BrokerError) => {
      const d = limiter.admit(key(peer, 'refused', error));
      if (!d.emit) return;
      refused.call(observer, peer, reported(error, d.suppressed, d.sinceMs));
    };
  }
  const failed = observer.failed;
  if (failed) {
    out.failed = (peer: P, error: BrokerError, durationMs: number) => {
      const d = limiter.admit(key(peer, 'failed', error));
      if (!d.emit) return;
      failed.call(observer, peer, reported(error, d.suppressed, d.sinceMs), durationMs);
    };
  }
  return out;
}
