/**
 * A bound on concurrent work with abortable waiting: at most `size` holders at once, the rest wait
 * in arrival order. The federation manager uses it so a cold start with thousands of peers opens
 * at most a few dozen TLS connections at a time (bench/scale.bench.ts measured ~50 MiB of native
 * memory left behind by 1,000 simultaneous handshakes).
 */
export class FetchSlots {
  readonly size: number;
  #inUse = 0;
  readonly #waiting: { grant: () => void }[] = [];

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new TypeError(`FetchSlots: size must be a positive integer, got ${size}`);
    }
    this.size = size;
  }

  /** Slots held right now. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Runs `fn` once a slot is free and frees it when `fn` settles. Rejects with the signal's reason,
   * without running `fn`, when `signal` aborts while waiting.
   */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.#acquire(signal);
    try {
      return await fn();
    } finally {
      this.#release();
    }
  }

  #acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.#inUse < this.size) {
      this.#inUse++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const entry = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          this.#inUse++;
          resolve();
        },
      };
      const onAbort = (): void => {
        const i = this.#waiting.indexOf(entry);
        if (i !== -1) this.#waiting.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(entry);
    });
  }

  #release(): void {
    this.#inUse--;
    this.#waiting.shift()?.grant();
  }
}
