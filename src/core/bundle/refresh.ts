import type { TrustBundle } from './trust-bundle.js';

/**
 * The refresh schedule as a pure function of the bundle, so the scheduler that runs it can be
 * driven by a fake clock in tests.
 *
 * Defaults match SPIRE's bundle client: the effective hint is the bundle's `spiffe_refresh_hint`
 * when set, else a tenth of the shortest X.509 authority lifetime; it is floored at one minute;
 * the poll interval is a quarter of it (SPIFFE Federation §4.1 / §6.2 say poll at the hint; SPIRE
 * polls four times as often, and so do we by default).
 */
export interface RefreshPolicy {
  /** Poll interval = effective hint / divisor. Default 4. */
  readonly divisor?: number;
  /** Floor applied to the effective hint, in seconds. Default 60 (SPIRE's MinimumRefreshHint). */
  readonly minHintSeconds?: number;
  /**
   * Cap applied to the effective hint, in seconds. Default {@link DEFAULT_MAX_REFRESH_HINT_SECONDS}
   * (one day). A peer's hint is its own claim: uncapped, a huge one would stretch the stale window
   * (3 × hint) until the peer is never reported STALE however long it stays silent.
   */
  readonly maxHintSeconds?: number;
  /** Used when there is no bundle and no hint can be derived, in seconds. Default 60. */
  readonly defaultHintSeconds?: number;
  /** Clamp of the resulting interval, in seconds. Default [0, ∞). */
  readonly minIntervalSeconds?: number;
  readonly maxIntervalSeconds?: number;
  /**
   * Jitter as a fraction of the interval: the result is spread uniformly over
   * `interval × [1 − jitter, 1]` so peers polled together drift apart but are never late.
   * Default 0.
   */
  readonly jitter?: number;
}

/** Default {@link RefreshPolicy.maxHintSeconds}: one day. */
export const DEFAULT_MAX_REFRESH_HINT_SECONDS = 86_400;

/** Policy for the federation scheduler: hint/4 clamped to [1 s, 5 min], 10 % jitter. */
export const FEDERATION_REFRESH_POLICY: RefreshPolicy = Object.freeze({
  divisor: 4,
  minHintSeconds: 0,
  defaultHintSeconds: 300,
  minIntervalSeconds: 1,
  maxIntervalSeconds: 300,
  jitter: 0.1,
});

/**
 * The hint a client should use, in seconds: the bundle's own hint when set, else a tenth of the
 * shortest X.509 authority lifetime (SPIFFE Trust Domain and Bundle §6.2 lets clients derive it
 * from validity periods), else `defaultHintSeconds`; floored at `minHintSeconds` and capped at
 * `maxHintSeconds` (one day by default; the cap wins over the floor). SPIFFE Federation §4.1
 * leaves the poll frequency to the client: the hint is advice, never a licence to go silent.
 */
export function effectiveRefreshHint(bundle: TrustBundle | undefined, policy: RefreshPolicy = {}): number {
  const floor = policy.minHintSeconds ?? 60;
  let hint = bundle?.refreshHint ?? 0;
  if (hint <= 0 && bundle && bundle.x509Authorities.length > 0) {
    let shortest = Number.POSITIVE_INFINITY;
    for (const a of bundle.x509Authorities) {
      const lifetime = (a.notAfter - Date.parse(a.certificate.validFrom)) / 1000;
      shortest = Math.min(shortest, lifetime);
    }
    hint = Math.floor(shortest / 10);
  }
  if (hint <= 0) hint = policy.defaultHintSeconds ?? 60;
  const cap = policy.maxHintSeconds ?? DEFAULT_MAX_REFRESH_HINT_SECONDS;
  if (!(cap > 0)) throw new TypeError('RefreshPolicy.maxHintSeconds must be > 0');
  return Math.min(Math.max(hint, floor), cap);
}

/**
 * The delay until the next refresh, in milliseconds.
 * @param random a source of uniform numbers in [0, 1) (inject a seeded one in tests)
 */
export function nextRefreshDelay(
  bundle: TrustBundle | undefined,
  policy: RefreshPolicy = {},
  random: () => number = () => 1,
): number {
  const divisor = policy.divisor ?? 4;
  if (!(divisor > 0)) throw new TypeError('RefreshPolicy.divisor must be > 0');
  let seconds = effectiveRefreshHint(bundle, policy) / divisor;
  seconds = Math.max(seconds, policy.minIntervalSeconds ?? 0);
  seconds = Math.min(seconds, policy.maxIntervalSeconds ?? Number.POSITIVE_INFINITY);
  const jitter = Math.min(Math.max(policy.jitter ?? 0, 0), 1);
  const factor = 1 - jitter * (1 - Math.min(Math.max(random(), 0), 1));
  return Math.round(seconds * 1000 * factor);
}

/** Capped exponential backoff after `failures` consecutive failures (1-based), in milliseconds. */
export function backoffDelay(
  failures: number,
  opts: { baseMs?: number; maxMs?: number; jitter?: number } = {},
  random: () => number = () => 1,
): number {
  const base = opts.baseMs ?? 1000;
  const max = opts.maxMs ?? 300_000;
  const raw = Math.min(max, base * 2 ** Math.max(0, Math.min(failures - 1, 30)));
  const jitter = Math.min(Math.max(opts.jitter ?? 0.2, 0), 1);
  return Math.round(raw * (1 - jitter * (1 - random())));
}
