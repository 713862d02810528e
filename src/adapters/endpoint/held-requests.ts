import type { Clock } from '../../platform/clock.js';
import { sleep } from './deps.js';

/** Why a held request was let go. */
export type ReleaseReason =
  /** The bundle changed: answer with the new document. */
  | 'changed'
  /** The wait ended: answer 304. */
  | 'timeout'
  /** The client went away, or the caller cancelled: answer nothing useful. */
  | 'cancelled'
  /** The endpoint is shutting down: answer 304 so the client polls again. */
  | 'closing';

/** A held request; {@link HeldRequest.cancel} releases it with `'cancelled'`. */
export interface HeldRequest {
  cancel(): void;
}

/** Default granularity of hold deadlines, ms. */
export const DEFAULT_HOLD_TICK_MS = 250;

/** Called once when a held request is let go, with the item it was held with. */
export type ReleaseCallback<T> = (reason: ReleaseReason, item: T) => void;

/**
 * One held request, and its handle. A class rather than closures: with 10,000 held, every
 * per-request closure and context is heap that each full GC marks while they wait (and marks
 * during the release, when it slows the answers): a caller passing one shared callback and the
 * request as its item allocates nothing else per request.
 */
class Waiter<T> implements HeldRequest {
  readonly bucket: number;
  done: ReleaseCallback<T> | undefined;
  readonly item: T;
  readonly #onCancel: (w: Waiter<T>) => void;

  constructor(bucket: number, done: ReleaseCallback<T>, item: T, onCancel: (w: Waiter<T>) => void) {
    this.bucket = bucket;
    this.done = done;
    this.item = item;
    this.#onCancel = onCancel;
  }

  cancel(): void {
    this.#onCancel(this);
  }
}

/**
 * The set of requests held until the bundle changes or their wait ends, built for many thousands
 * of waiters: holding and cancelling are O(1), a change releases everyone in O(waiters), and all
 * deadlines share ONE sleep on the injected clock.
 *
 * Deadlines are grouped into buckets of `tickMs` (rounded down, so nobody is held longer than
 * asked; RFC 7240 §4.3 asks for an answer *within* the wait). The single sleep is armed for the
 * earliest bucket; finding it scans the bucket keys, of which there are at most
 * `maxWait / tickMs` (240 for 60 s at 250 ms).
 */
export class HeldRequests<T = undefined> {
  readonly max: number;
  readonly #clock: Clock;
  readonly #tickMs: number;
  /** Shared by every waiter's {@link HeldRequest.cancel}. */
  readonly #cancel: (w: Waiter<T>) => void;
  /** Deadline bucket (ms, multiple of tickMs) → waiters. */
  readonly #buckets = new Map<number, Set<Waiter<T>>>();
  #size = 0;
  #timer: AbortController | undefined;
  #armedFor: number | undefined;

  constructor(opts: { max: number; clock: Clock; tickMs?: number }) {
    if (!Number.isSafeInteger(opts.max) || opts.max < 0) {
      throw new TypeError(`max held requests must be a non-negative integer, got ${opts.max}`);
    }
    this.max = opts.max;
    this.#cancel = (w) => this.#release(w, 'cancelled');
    this.#clock = opts.clock;
    this.#tickMs = opts.tickMs ?? DEFAULT_HOLD_TICK_MS;
  }

  /** Requests held right now. */
  get size(): number {
    return this.#size;
  }

  /**
   * Holds a request for at most `waitMs`; `done` is called exactly once with the reason and
   * `item`.
   * @returns the handle, or undefined when {@link HeldRequests.max} requests are already held.
   */
  hold(
    waitMs: number,
    done: ReleaseCallback<T>,
    ...[item]: T extends undefined ? [item?: T] : [item: T]
  ): HeldRequest | undefined {
    if (this.#size >= this.max) return undefined;
    const deadline = this.#clock.now() + Math.max(0, waitMs);
    const bucket = Math.floor(deadline / this.#tickMs) * this.#tickMs;
    const waiter = new Waiter<T>(bucket, done, item as T, this.#cancel);
    let set = this.#buckets.get(bucket);
    if (!set) {
      set = new Set();
      this.#buckets.set(bucket, set);
    }
    set.add(waiter);
    this.#size++;
    if (this.#armedFor === undefined || bucket < this.#armedFor) this.#arm(bucket);
    return waiter;
  }

  /** Releases every held request with `reason` (`'changed'` on a new bundle). O(waiters). */
  releaseAll(reason: ReleaseReason): void {
    const buckets = [...this.#buckets.values()];
    this.#buckets.clear();
    this.#size = 0;
    this.#disarm();
    for (const set of buckets) {
      for (const w of set) this.#finish(w, reason);
    }
  }

  #release(waiter: Waiter<T>, reason: ReleaseReason): void {
    if (waiter.done === undefined) return;
    const set = this.#buckets.get(waiter.bucket);
    if (set?.delete(waiter)) {
      this.#size--;
      if (set.size === 0) {
        this.#buckets.delete(waiter.bucket);
        if (this.#armedFor === waiter.bucket) this.#rearm();
      }
    }
    this.#finish(waiter, reason);
  }

  #finish(waiter: Waiter<T>, reason: ReleaseReason): void {
    const done = waiter.done;
    waiter.done = undefined;
    done?.(reason, waiter.item);
  }

  #arm(bucket: number): void {
    this.#disarm();
    this.#armedFor = bucket;
    const timer = new AbortController();
    this.#timer = timer;
    void sleep(this.#clock, Math.max(0, bucket - this.#clock.now()), timer.signal).then((elapsed) => {
      if (elapsed && this.#timer === timer) this.#expire();
    });
  }

  #disarm(): void {
    this.#timer?.abort();
    this.#timer = undefined;
    this.#armedFor = undefined;
  }

  #rearm(): void {
    let earliest: number | undefined;
    for (const b of this.#buckets.keys()) if (earliest === undefined || b < earliest) earliest = b;
    if (earliest === undefined) this.#disarm();
    else this.#arm(earliest);
  }

  #expire(): void {
    this.#timer = undefined;
    this.#armedFor = undefined;
    const now = this.#clock.now();
    const due: Set<Waiter<T>>[] = [];
    for (const [b, set] of this.#buckets) {
      if (b <= now) {
        due.push(set);
        this.#buckets.delete(b);
        this.#size -= set.size;
      }
    }
    this.#rearm();
    for (const set of due) for (const w of set) this.#finish(w, 'timeout');
  }
}
