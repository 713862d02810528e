/** A token bucket's shape: `burst` tokens at most, refilled at `perSecond`. */
export interface BucketRate {
  readonly burst: number;
  readonly perSecond: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Most source addresses tracked; past it, full buckets (idle sources) are forgotten. */
const MAX_TRACKED = 4096;

/**
 * Token buckets per key (a source address) and one overall, on an injected clock: `take(key)`
 * spends one token from both or from neither. Bounded memory: idle keys are dropped once
 * {@link MAX_TRACKED} are tracked, and a key that cannot be tracked is refused.
 */
export class KeyedRateLimiter {
  readonly #perKey: BucketRate;
  readonly #overall: BucketRate;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();
  readonly #all: Bucket;

  constructor(opts: { perKey: BucketRate; overall: BucketRate; now: () => number }) {
    for (const [name, r] of [
      ['perKey', opts.perKey],
      ['overall', opts.overall],
    ] as const) {
      if (
        !(r.burst >= 1) ||
        !(r.perSecond > 0) ||
        !Number.isFinite(r.burst) ||
        !Number.isFinite(r.perSecond)
      ) {
        throw new TypeError(`KeyedRateLimiter: ${name} needs burst >= 1 and perSecond > 0`);
      }
    }
    this.#perKey = opts.perKey;
    this.#overall = opts.overall;
    this.#now = opts.now;
    this.#all = { tokens: opts.overall.burst, at: opts.now() };
  }

  #refill(b: Bucket, rate: BucketRate, now: number): void {
    const elapsed = Math.max(0, now - b.at) / 1000;
    b.tokens = Math.min(rate.burst, b.tokens + elapsed * rate.perSecond);
    b.at = now;
  }

  #forgetIdle(now: number): void {
    for (const [k, b] of this.#buckets) {
      this.#refill(b, this.#perKey, now);
      if (b.tokens >= this.#perKey.burst) this.#buckets.delete(k);
    }
  }

  /** Spends a token of `key` and of the overall bucket; false (nothing spent) when either is empty. */
  take(key: string): boolean {
    const now = this.#now();
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= MAX_TRACKED) this.#forgetIdle(now);
      if (this.#buckets.size >= MAX_TRACKED) return false;
      b = { tokens: this.#perKey.burst, at: now };
      this.#buckets.set(key, b);
    }
    this.#refill(b, this.#perKey, now);
    this.#refill(this.#all, this.#overall, now);
    if (b.tokens < 1 || this.#all.tokens < 1) return false;
    b.tokens -= 1;
    this.#all.tokens -= 1;
    return true;
  }
}
