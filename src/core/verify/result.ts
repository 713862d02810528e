import { VerifyError, type VerifyErrorCode } from '../../errors.js';

/**
 * A refused SVID: a stable {@link VerifyErrorCode} (see docs/errors.md) and a message saying
 * exactly which rule failed and on what. Bad SVIDs are results, never exceptions.
 */
export interface VerifyFailure {
  readonly ok: false;
  readonly code: VerifyErrorCode;
  readonly message: string;
}

/** Builds a {@link VerifyFailure}. */
export function failure(code: VerifyErrorCode, message: string): VerifyFailure {
  return { ok: false, code, message };
}

/**
 * The {@link VerifyError} for a failed result, for callers that prefer to throw.
 *
 * @example
 * const r = verifyX509Svid(chain, bundles, { now: Date.now() });
 * if (!r.ok) throw verifyFailureToError(r);
 */
export function verifyFailureToError(result: VerifyFailure): VerifyError {
  return new VerifyError(result.code, result.message);
}

/** `now` as ms since the Unix epoch; a TypeError for anything but a valid Date or finite number. */
export function nowMs(now: unknown, fn: string): number {
  const ms = now instanceof Date ? now.getTime() : now;
  if (typeof ms !== 'number' || !Number.isFinite(ms)) {
    throw new TypeError(`${fn}: opts.now must be a Date or a finite number of ms since the epoch`);
  }
  return ms;
}
