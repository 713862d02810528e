import { DEFAULT_MAX_BUNDLE_MAP_BYTES, parseBundleMap } from '../../core/bundle/bundle-map.js';
import type { BundleSource } from '../../core/bundle/source.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { ApiError, BrokerError, BundleError } from '../../errors.js';
import { type Clock, isAbort, systemClock } from '../../platform/clock.js';

/** Default {@link PolledBundleMapSourceOptions.intervalMs}. */
export const DEFAULT_BUNDLE_MAP_POLL_MS = 5_000;

/** Options of {@link PolledBundleMapSource}. */
export interface PolledBundleMapSourceOptions {
  /** Where the SPIFFE Bundle Map is served, e.g. a broker's `http://127.0.0.1:8089/v1/bundles`. */
  readonly url: string | URL;
  /** Poll period, ms. Default 5 000. */
  readonly intervalMs?: number;
  /** Injected fetch (default the global one). */
  readonly fetch?: (url: string, init: { signal: AbortSignal }) => Promise<Response>;
  readonly clock?: Clock;
  /**
   * Largest map accepted, bytes. Default {@link DEFAULT_MAX_BUNDLE_MAP_BYTES}: the documented
   * maximum map a broker serves (1,024 trust domains at the per-peer default cap of 64 KiB), so a
   * broker's `/v1/bundles` always fits unless its operator raised per-peer caps past that total.
   */
  readonly maxBytes?: number;
  /** Hears every failed poll (the last good bundles stay in force). */
  readonly onError?: (error: BrokerError) => void;
}

/**
 * A {@link BundleSource} that follows a SPIFFE Bundle Map served over HTTP — typically a broker's
 * admin `/v1/bundles` — by polling it. Each trust domain keeps its own bundle (never merged); a
 * failed or refused poll keeps the last good map. Nothing happens until {@link run}.
 *
 * @example
 * const bundles = new PolledBundleMapSource({ url: 'http://127.0.0.1:8089/v1/bundles' });
 * void bundles.run(signal);
 * await bundles.ready();
 */
export class PolledBundleMapSource implements BundleSource {
  readonly #url: string;
  readonly #intervalMs: number;
  readonly #fetch: NonNullable<PolledBundleMapSourceOptions['fetch']>;
  readonly #clock: Clock;
  readonly #onError: ((error: BrokerError) => void) | undefined;
  readonly #maxBytes: number;
  #bundles: ReadonlyMap<string, TrustBundle> = new Map();
  #loaded = false;
  #waiters: (() => void)[] = [];

  constructor(opts: PolledBundleMapSourceOptions) {
    this.#url = String(opts.url);
    this.#intervalMs = opts.intervalMs ?? DEFAULT_BUNDLE_MAP_POLL_MS;
    this.#fetch = opts.fetch ?? ((url, init) => fetch(url, init));
    this.#clock = opts.clock ?? systemClock;
    this.#onError = opts.onError;
    this.#maxBytes = opts.maxBytes ?? DEFAULT_MAX_BUNDLE_MAP_BYTES;
    if (!Number.isSafeInteger(this.#maxBytes) || this.#maxBytes < 1) {
      throw new TypeError(`PolledBundleMapSource: maxBytes must be a positive integer, got ${opts.maxBytes}`);
    }
  }

  getBundleForTrustDomain(trustDomain: TrustDomain): TrustBundle | undefined {
    return this.#bundles.get(trustDomain.name);
  }

  /** The bundles of the last good poll, sorted by trust domain. */
  bundles(): TrustBundle[] {
    return [...this.#bundles.values()].sort((a, b) => (a.trustDomain.name < b.trustDomain.name ? -1 : 1));
  }

  /** Resolves after the first successful poll. */
  ready(): Promise<void> {
    return this.#loaded ? Promise.resolve() : new Promise((r) => this.#waiters.push(r));
  }

  /**
   * Polls once: fetches and parses the map, replacing the held bundles on success.
   * @throws ApiError `ERR_API_CONNECT` / `ERR_API_RESPONSE`, BundleError for a refused map.
   */
  async refresh(signal: AbortSignal = new AbortController().signal): Promise<void> {
    let res: Response;
    try {
      res = await this.#fetch(this.#url, { signal });
    } catch (cause) {
      if (signal.aborted) throw cause;
      throw new ApiError('ERR_API_CONNECT', `GET ${this.#url}: ${(cause as Error).message}`, { cause });
    }
    if (res.status !== 200) {
      throw new ApiError('ERR_API_RESPONSE', `GET ${this.#url}: HTTP ${res.status}`);
    }
    const declared = Number(res.headers.get('content-length') ?? Number.NaN);
    if (declared > this.#maxBytes) {
      await res.body?.cancel().catch(() => undefined);
      throw new BundleError(
        'ERR_BUNDLE_TOO_LARGE',
        `GET ${this.#url}: bundle map is ${declared} bytes; the limit is ${this.#maxBytes}`,
      );
    }
    const parsed = parseBundleMap(new Uint8Array(await res.arrayBuffer()), { maxBytes: this.#maxBytes });
    this.#bundles = parsed.bundles;
    if (!this.#loaded) {
      this.#loaded = true;
      for (const w of this.#waiters.splice(0)) w();
    }
  }

  /** Polls until `signal` aborts. Failures go to `onError`; they never end the loop. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.refresh(signal);
      } catch (err) {
        if (signal.aborted || isAbort(err, signal)) return;
        const error =
          err instanceof BrokerError
            ? err
            : new ApiError('ERR_API_RESPONSE', String((err as Error)?.message ?? err));
        this.#onError?.(error);
      }
      try {
        await this.#clock.sleep(this.#intervalMs, signal);
      } catch {
        return;
      }
    }
  }
}
