import { readFile } from 'node:fs/promises';
import { type Clock, systemClock } from '../../platform/clock.js';
import { type Logger, nullLogger } from '../../platform/logger.js';

/**
 * The side effects the endpoint uses — clock and sleeps, file reads, logging — as one typed deps
 * object. {@link defaultEndpointDeps} is the only place that binds them to the real process; every
 * component takes a `Partial<EndpointDeps>` and fills the rest from there, so tests swap in a
 * manual clock, an in-memory file system and a recording logger.
 * @module
 */

/** The structured logger (src/platform/logger.ts). */
export type EndpointLogger = Logger;

/** Every side effect of the endpoint module. */
export interface EndpointDeps {
  /** Wall clock and sleeps (src/platform/clock.ts). */
  readonly clock: Clock;
  readonly logger: EndpointLogger;
  /** Reads a whole file (TLS certificate and key files). */
  readonly readFile: (path: string) => Promise<Uint8Array>;
}

/** The silent logger (src/platform/logger.ts `nullLogger`): library code logs nothing unless given one. */
export const NULL_LOGGER: EndpointLogger = nullLogger;

/** The one place where the endpoint's side effects are bound to the real process. */
export function defaultEndpointDeps(overrides: Partial<EndpointDeps> = {}): EndpointDeps {
  return {
    clock: overrides.clock ?? systemClock,
    logger: overrides.logger ?? NULL_LOGGER,
    readFile: overrides.readFile ?? ((path) => readFile(path)),
  };
}

/**
 * Waits `ms` on `clock`; resolves early (without throwing) when `signal` aborts.
 * @returns true when the full delay elapsed, false when aborted.
 */
export async function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return false;
  try {
    await clock.sleep(ms, signal);
    return true;
  } catch (err) {
    if (signal?.aborted) return false;
    throw err;
  }
}
