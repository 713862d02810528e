import type { Clock } from '../../src/platform/clock.js';

interface Sleeper {
  at: number;
  seq: number;
  resolve: () => void;
}

/**
 * A manually driven {@link Clock}. `advance(ms)` moves time forward and wakes every sleeper whose
 * deadline passed, in deadline order, letting the promise chains they start run before the next
 * one wakes.
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #sleepers: Sleeper[] = [];

  constructor(start = Date.parse('2026-11-23T12:00:00Z')) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const s: Sleeper = {
        at: this.#now + Math.max(0, ms),
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.#sleepers = this.#sleepers.filter((x) => x !== s);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#sleepers.push(s);
    });
  }

  /** Number of pending sleeps. */
  get pending(): number {
    return this.#sleepers.length;
  }

  /** The earliest pending deadline, or undefined. */
  nextDeadline(): number | undefined {
    return this.#sleepers.reduce<number | undefined>(
      (m, s) => (m === undefined || s.at < m ? s.at : m),
      undefined,
    );
  }

  /** Lets pending promise callbacks run (several macrotask turns). */
  async settle(turns = 5): Promise<void> {
    for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
  }

  /** Moves time forward by `ms`, waking due sleepers in order. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await this.settle();
      const due = this.#sleepers
        .filter((s) => s.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.#sleepers = this.#sleepers.filter((s) => s !== due);
      this.#now = Math.max(this.#now, due.at);
      due.resolve();
    }
    this.#now = target;
    await this.settle();
  }

  /** Advances to the next pending deadline (if any). */
  async runNext(): Promise<void> {
    const next = this.nextDeadline();
    if (next !== undefined) await this.advance(Math.max(0, next - this.#now));
  }
}
