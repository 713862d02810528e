import type { Clock } from '../../platform/clock.js';

/**
 * Side-effect seams shared by the Kubernetes adapters: a structured logger (silent by default)
 * and a wake-up trigger for level-triggered loops.
 * @module
 */

/** Structured log sink. Every method is optional to implement; the default logs nothing. */
export interface K8sLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** A logger that drops everything. */
export const nullLogger: K8sLogger = Object.freeze({
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
});

/**
 * A coalescing wake-up: any number of `fire()` calls between two `wait()`s wake one waiter once.
 * Used by reconcile loops that sleep until "something changed" or a resync period passes.
 */
export class Trigger {
  #pending = false;
  #wake: (() => void) | undefined;

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
  async wait(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
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
      timer.abort();
    }
    signal.throwIfAborted();
    this.#pending = false;
  }
}
