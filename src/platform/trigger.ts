import type { Clock } from './clock.js';

/** What {@link Trigger.wait} sleeps on: a {@link Clock}, or any `sleep(ms, signal)`. */
export type Sleeper = Pick<Clock, 'sleep'>;

/** Why a finished wait cancels its own timer. */
const WAIT_OVER = Symbol('wait over');

/**
 * The project's one wake-up primitive: a coalescing trigger — any number of `fire()` calls
 * between two `wait()`s wake one waiter once. Level-triggered loops (the Kubernetes sinks and
 * sources, the allowlist watcher) sleep on it until "something changed" or a period passes.
 */
export class Trigger {
  #pending = false;
  #wake: (() => void) | undefined;

  /** Work is pending (fired since the last {@link Trigger.take} or completed wait). */
  get pending(): boolean {
    return this.#pending;
  }

  /** Clears pending work; true when there was some (the caller does it now). */
  take(): boolean {
    const was = this.#pending;
    this.#pending = false;
    return was;
  }

  /** Marks work pending and wakes a current waiter. */
  fire(): void {
    this.#pending = true;
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /**
   * Resolves at once when work is pending (clearing it), else when {@link Trigger.fire} is called
   * or `ms` pass on `clock`, whichever is first. Rejects with the signal's reason when it aborts.
   */
  async wait(clock: Sleeper, ms: number, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.#pending) {
      this.#pending = false;
      return;
    }
    const timer = new AbortController();
    const onAbort = (): void => timer.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        this.#wake = resolve;
        clock.sleep(ms, timer.signal).then(resolve, reject);
      });
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#wake = undefined;
      // With a reason: abort() without one builds a DOMException, a visible cost at 1,000 peers.
      timer.abort(WAIT_OVER);
    }
    signal.throwIfAborted();
    this.#pending = false;
  }
}

/**
 * The level-triggered loop of a sink: runs `pass` at once, then again on every `trigger.fire()`
 * and at least every `periodMs`; after a failed pass (false) again after a backoff — 500 ms
 * doubling up to `periodMs` — or earlier on a fire(). Resolves when `signal` aborts.
 */
export async function convergeLoop(
  trigger: Trigger,
  clock: Sleeper,
  periodMs: number,
  signal: AbortSignal,
  pass: () => Promise<boolean>,
): Promise<void> {
  let backoff = 500;
  try {
    for (;;) {
      if (await pass()) {
        backoff = 500;
        await trigger.wait(clock, periodMs, signal);
      } else {
        await trigger.wait(clock, backoff, signal);
        backoff = Math.min(periodMs, backoff * 2);
      }
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  }
}
