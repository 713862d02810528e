import type { ErrorCode } from '../../errors.js';
import { DEFAULT_MAX_REFRESH_HINT_SECONDS } from '../bundle/refresh.js';

/**
 * A federated peer's lifecycle as a pure state machine: events in, next state out, time passed
 * in explicitly. The daemon feeds it fetch outcomes and periodic ticks and reports the state and
 * its coded reason in status, metrics and readiness.
 * @module
 */

/**
 * - `PENDING`: no bundle accepted yet, and fewer than `failingAfter` consecutive failures.
 * - `ACTIVE`: a bundle was accepted or confirmed less than `staleAfterHints` × the effective
 *   refresh hint ago.
 * - `STALE`: a bundle was accepted once, but nothing succeeded for `staleAfterHints` × the hint,
 *   whatever the cause (peer down, refusing, hanging). The last accepted bundle stays in force:
 *   the peer is still trusted, with an aging bundle.
 * - `FAILING`: at least `failingAfter` consecutive failures (fetch errors or policy refusals)
 *   while the held bundle is still fresh. Fewer failures while fresh stay ACTIVE.
 * - `UNAVAILABLE`: no bundle was ever accepted and at least `failingAfter` consecutive attempts
 *   failed or were refused: nothing of this trust domain is trusted.
 * - `REVOKED`: removed from the allowlist (terminal: the relationship ended, SPIFFE Federation
 *   §6.3), or the last accepted bundle was empty (TDB §4.1.3: every SVID of the domain is
 *   invalid) until a non-empty bundle is accepted. Status reports a removed peer as `REVOKING`
 *   while a SPIRE server still holds its bundle, and as `REMOVED` when no bundle of it was ever
 *   held (see src/adapters/admin/status.ts).
 */
export type PeerStatus = 'PENDING' | 'ACTIVE' | 'STALE' | 'FAILING' | 'UNAVAILABLE' | 'REVOKED';

/** Why a peer is in its state: a documented code and a readable message. */
export interface PeerStateReason {
  readonly code: ErrorCode;
  readonly message: string;
}

/** Everything the state machine remembers about one peer. Immutable. */
export interface PeerState {
  readonly status: PeerStatus;
  /**
   * Present for STALE, FAILING and REVOKED; for PENDING once an attempt failed; absent for
   * ACTIVE. FAILING and PENDING carry the last failure's code; STALE `ERR_PEER_STALE`; REVOKED
   * `ERR_PEER_REMOVED` or `ERR_PEER_REVOKED_ALL_KEYS`.
   */
  readonly reason?: PeerStateReason;
  /** When the current status was entered, ms since the epoch. */
  readonly since: number;
  readonly lastSuccessAt?: number;
  readonly lastFailureAt?: number;
  /** The most recent failure or refusal (kept after a success, for status pages). */
  readonly lastError?: PeerStateReason;
  /** Failures and refusals since the last success. */
  readonly consecutiveFailures: number;
  /** Effective refresh hint of the last accepted bundle, seconds (the stale window's unit). */
  readonly hintSeconds: number;
  /** The last accepted bundle was empty. */
  readonly keysRevoked: boolean;
  /** Removed from the allowlist. */
  readonly removed: boolean;
}

/** What happened to a peer. */
export type PeerEvent =
  /**
   * A fetch answered with a bundle that policy accepted, or with the unchanged current bundle.
   * `hintSeconds` is the effective refresh hint (see `effectiveRefreshHint`); `empty` when the
   * accepted bundle holds no authority.
   */
  | { readonly type: 'fetch-succeeded'; readonly hintSeconds: number; readonly empty?: boolean }
  /** The fetch failed (network, TLS, HTTP status, parse): a FetchError / BundleError code. */
  | { readonly type: 'fetch-failed'; readonly code: ErrorCode; readonly message?: string }
  /** The peer answered but policy refused the bundle: a PolicyError code. */
  | { readonly type: 'refused'; readonly code: ErrorCode; readonly message?: string }
  /** Time passed (re-evaluates staleness). */
  | { readonly type: 'tick' }
  /** The peer left the allowlist. */
  | { readonly type: 'removed' };

/** Thresholds of the state machine. */
export interface PeerStateOptions {
  /** STALE after this many effective refresh hints without success. Default 3. */
  readonly staleAfterHints?: number;
  /** FAILING after this many consecutive failures (outside the fresh window). Default 3. */
  readonly failingAfter?: number;
  /**
   * Cap on the hint that sizes the stale window, seconds. Default
   * {@link DEFAULT_MAX_REFRESH_HINT_SECONDS} (one day): whatever hint a peer advertises, it is
   * STALE after at most `staleAfterHints` days of silence.
   */
  readonly maxHintSeconds?: number;
}

/** Hint assumed before any bundle is accepted, seconds (SPIFFE Federation §6.2's suggested 5 min). */
export const DEFAULT_PEER_HINT_SECONDS = 300;

/** A newly allowlisted peer: PENDING since `now`. */
export function initialPeerState(now: number, hintSeconds = DEFAULT_PEER_HINT_SECONDS): PeerState {
  return {
    status: 'PENDING',
    since: now,
    consecutiveFailures: 0,
    hintSeconds,
    keysRevoked: false,
    removed: false,
  };
}

/**
 * The state after `event` at time `now` (ms since the epoch). Pure; a removed peer ignores every
 * later event.
 *
 * @example
 * let s = initialPeerState(clock.now());
 * s = nextPeerState(s, { type: 'fetch-succeeded', hintSeconds: 300 }, clock.now()); // ACTIVE
 * s = nextPeerState(s, { type: 'tick' }, clock.now() + 901_000);                     // STALE
 */
export function nextPeerState(
  prev: PeerState,
  event: PeerEvent,
  now: number,
  options: PeerStateOptions = {},
): PeerState {
  if (prev.removed) return prev;
  const next: Mutable<PeerState> = { ...prev };
  switch (event.type) {
    case 'fetch-succeeded': {
      if (!(event.hintSeconds > 0)) throw new TypeError('nextPeerState: hintSeconds must be > 0');
      next.lastSuccessAt = now;
      next.consecutiveFailures = 0;
      next.hintSeconds = event.hintSeconds;
      next.keysRevoked = event.empty === true;
      break;
    }
    case 'fetch-failed':
    case 'refused': {
      const message =
        event.message ?? (event.type === 'refused' ? 'bundle refused by policy' : 'bundle fetch failed');
      next.lastFailureAt = now;
      next.consecutiveFailures = prev.consecutiveFailures + 1;
      next.lastError = { code: event.code, message };
      break;
    }
    case 'removed':
      next.removed = true;
      break;
    case 'tick':
      break;
  }
  const { status, reason } = derive(next, now, options);
  next.status = status;
  if (reason) next.reason = reason;
  else delete next.reason;
  if (status !== prev.status) next.since = now;
  return next;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function derive(
  s: PeerState,
  now: number,
  options: PeerStateOptions,
): { status: PeerStatus; reason: PeerStateReason | undefined } {
  const staleAfter = options.staleAfterHints ?? 3;
  const failingAfter = options.failingAfter ?? 3;
  if (s.removed) {
    return {
      status: 'REVOKED',
      reason: { code: 'ERR_PEER_REMOVED', message: 'removed from the allowlist; its bundle is revoked' },
    };
  }
  if (s.keysRevoked) {
    return {
      status: 'REVOKED',
      reason: {
        code: 'ERR_PEER_REVOKED_ALL_KEYS',
        message: 'the peer published an empty bundle: every SVID of its trust domain is invalid',
      },
    };
  }
  const failing = s.consecutiveFailures >= failingAfter;
  // Never answered successfully: nothing is trusted yet.
  if (s.lastSuccessAt === undefined) {
    return failing
      ? {
          status: 'UNAVAILABLE',
          reason: s.lastError ?? { code: 'ERR_PEER_STALE', message: 'consecutive failures' },
        }
      : { status: 'PENDING', reason: s.lastError };
  }
  const hint = Math.min(s.hintSeconds, options.maxHintSeconds ?? DEFAULT_MAX_REFRESH_HINT_SECONDS);
  const windowMs = staleAfter * hint * 1000;
  if (now - s.lastSuccessAt < windowMs) {
    // Fresh bundle; FAILING says the peer is not answering right now (its bundle is still current).
    return failing
      ? {
          status: 'FAILING',
          reason: s.lastError ?? { code: 'ERR_PEER_STALE', message: 'consecutive failures' },
        }
      : { status: 'ACTIVE', reason: undefined };
  }
  // The last-known-good bundle stays trusted, but it has aged past the window: STALE, whatever the
  // cause (peer down, refusing, or hanging).
  const age = Math.floor((now - s.lastSuccessAt) / 1000);
  const last = s.lastError && s.consecutiveFailures > 0 ? `; last error ${s.lastError.code}` : '';
  return {
    status: 'STALE',
    reason: {
      code: 'ERR_PEER_STALE',
      message: `no successful fetch for ${age} s (stale after ${staleAfter} × ${hint} s)${last}`,
    },
  };
}
