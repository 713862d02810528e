/** Retry policy for SPIRE API calls (capped exponential backoff). */
export interface RetryPolicy {
  /** Attempts in total, the first included. Default 4; 1 disables retries. */
  readonly maxAttempts?: number;
  /** Delay before the second attempt, ms. Default 100. */
  readonly initialDelayMs?: number;
  /** Upper bound of any delay, ms. Default 2000. */
  readonly maxDelayMs?: number;
  /** Growth factor per attempt. Default 2. */
  readonly multiplier?: number;
}

/** The defaults of {@link RetryPolicy}. */
export const DEFAULT_RETRY_POLICY: Required<RetryPolicy> = Object.freeze({
  maxAttempts: 4,
  initialDelayMs: 100,
  maxDelayMs: 2000,
  multiplier: 2,
});

/**
 * Delay before retry number `retry` (1 = before the second attempt): `initial * multiplier^(retry-1)`
 * capped at `maxDelayMs`, scaled into [50 %, 100 %] by `random()` ("equal jitter") so clients that
 * failed together do not retry together. Pure: `random` is injected.
 */
export function retryDelayMs(
  retry: number,
  policy: RetryPolicy = {},
  random: () => number = () => 1,
): number {
  const p = { ...DEFAULT_RETRY_POLICY, ...policy };
  const base = Math.min(p.maxDelayMs, p.initialDelayMs * p.multiplier ** Math.max(0, retry - 1));
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(base / 2 + (base / 2) * r);
}
