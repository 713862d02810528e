import * as tls from 'node:tls';
import { pemToDerList } from '../../adapters/pki/pem.js';
import {
  DEFAULT_MAX_BUNDLE_BYTES,
  DEFAULT_MAX_BUNDLE_KEYS,
  type IgnoredEntry,
  parseBundle,
} from '../../core/bundle/codec.js';
import { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { BrokerError, BundleError, type ErrorCode, FetchError } from '../../errors.js';
import { type Clock, systemClock } from '../../platform/clock.js';
import { ERROR_BODY_BYTES, type ExchangeResponse, exchange, isRedirect, type TlsConnect } from './http.js';
import type { IdleConnections } from './idle-connections.js';
import type { EndpointAuth } from './tls.js';

/**
 * One fetch and validation of a peer's bundle from its bundle endpoint (SPIFFE Federation §5),
 * changing nothing: no state is written, nothing is pushed. See docs/federation-fetch.md.
 * @module
 */

/** Default TCP + TLS handshake limit per connection: 5 s. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Default limit for one URL's whole exchange (redirects and body included): 30 s. */
export const DEFAULT_FETCH_TIMEOUT_MS = 30_000;
/** Default redirects followed per URL. Federation only needs one; a few tolerate chained moves. */
export const DEFAULT_MAX_REDIRECTS = 3;
/** Largest `Prefer: wait` accepted, seconds (an hour: far above any sensible long-poll). */
export const MAX_WAIT_SECONDS = 3600;

/**
 * How the endpoint is authenticated: the allowlist entry's profile (`EndpointProfileConfig`, which
 * names files) resolved — one type, {@link EndpointAuth}, from the fetcher down to the TLS layer.
 */
export type FetchProfile = EndpointAuth;

/** Limits; every one has a default. */
export interface FetchLimits {
  /** TCP + TLS handshake, ms. Default {@link DEFAULT_CONNECT_TIMEOUT_MS}. */
  readonly connectTimeoutMs?: number;
  /**
   * One URL's whole exchange, redirects and body included, ms. Default
   * {@link DEFAULT_FETCH_TIMEOUT_MS}. A long-poll adds its wait to this.
   */
  readonly timeoutMs?: number;
  /** Largest body read, bytes, enforced while reading. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** Most `keys` entries parsed. Default {@link DEFAULT_MAX_BUNDLE_KEYS}. */
  readonly maxKeys?: number;
  /** Redirects followed per URL. Default {@link DEFAULT_MAX_REDIRECTS}. */
  readonly maxRedirects?: number;
}

/** What to fetch and how. */
export interface FetchRequest {
  /** The trust domain the result is bound to: configured, never inferred from a URL (Federation §7.2). */
  readonly trustDomain: TrustDomain;
  /** One or more `https` URLs, tried in order (failover). */
  readonly urls: readonly (URL | string)[];
  readonly profile: FetchProfile;
  /** The ETag of the bundle already held: sent as `If-None-Match` (a 304 answer means unchanged). */
  readonly etag?: string;
  /**
   * With `etag`: ask the server to hold the request up to this many seconds until the bundle
   * changes (`Prefer: wait=<n>`, RFC 7240 §4.3). Plain servers ignore it and answer at once.
   */
  readonly waitSeconds?: number;
  readonly limits?: FetchLimits;
  /** Cancels the fetch (`ERR_FETCH_ABORTED`); no further URL is tried. */
  readonly signal?: AbortSignal;
}

/** Side effects; real defaults when omitted. */
export interface FetchDeps {
  /** Opens the TLS connection. Default node:tls `connect`. */
  readonly connect?: TlsConnect;
  /** Time for SVID validity and the timers. Default the system clock. */
  readonly clock?: Clock;
  /**
   * Kept-alive connections reused across fetches (the daemon's, sized by broker.yaml
   * `fetch.keepAlive`). Default none: every fetch opens and closes its own connection.
   */
  readonly connections?: IdleConnections | undefined;
}

/** A URL that failed before another was tried (for logs: Federation §7.6). */
export interface FetchFailover {
  readonly url: string;
  readonly code: ErrorCode;
  readonly message: string;
}

/** A new bundle was fetched and parsed. */
export interface FetchedBundle {
  readonly kind: 'bundle';
  readonly bundle: TrustBundle;
  /** `keys` entries the parser skipped as the spec requires. */
  readonly ignored: readonly IgnoredEntry[];
  readonly etag?: string;
  /** The configured URL that answered (never a redirect target: those are not to be stored, Federation §5.2.1.4). */
  readonly url: string;
  /** Where the body came from when the URL redirected; for logs only. */
  readonly redirectedTo?: string;
  /** Body size in bytes. */
  readonly bytes: number;
  /** The server answered `Preference-Applied: wait` (it holds long-polls). */
  readonly supportsLongPoll: boolean;
  readonly failovers: readonly FetchFailover[];
}

/** The server confirmed the held ETag is current (304). */
export interface FetchNotModified {
  readonly kind: 'not-modified';
  readonly etag: string;
  readonly url: string;
  readonly redirectedTo?: string;
  readonly supportsLongPoll: boolean;
  readonly failovers: readonly FetchFailover[];
}

/** Outcome of {@link fetchPeerBundle}. */
export type FetchResult = FetchedBundle | FetchNotModified;

interface Resolved {
  readonly urls: readonly URL[];
  readonly auth: EndpointAuth;
  readonly connectTimeoutMs: number;
  readonly timeoutMs: number;
  readonly maxBodyBytes: number;
  readonly maxKeys: number;
  readonly maxRedirects: number;
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Validates a bundle endpoint URL (Federation §5.2.1.1 / §5.2.2.1: `https`, no userinfo).
 * @throws FetchError `ERR_FETCH_INSECURE_SCHEME` for `http:`, `ERR_FETCH_URL` otherwise.
 */
export function checkEndpointUrl(value: URL | string, what = 'bundle endpoint URL'): URL {
  let url: URL;
  try {
    url = typeof value === 'string' ? new URL(value) : new URL(value.href);
  } catch {
    throw new FetchError('ERR_FETCH_URL', `${what} ${JSON.stringify(String(value))} is not a valid URL`);
  }
  if (url.protocol === 'http:') {
    throw new FetchError(
      'ERR_FETCH_INSECURE_SCHEME',
      `${what} ${url.href} uses http: bundle endpoints are fetched over https only (SPIFFE Federation §5.2.1.1)`,
    );
  }
  if (url.protocol !== 'https:') {
    throw new FetchError(
      'ERR_FETCH_URL',
      `${what} ${url.href}: the scheme must be https, got ${url.protocol}`,
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw new FetchError(
      'ERR_FETCH_URL',
      `${what} ${url.protocol}//${url.host}${url.pathname}: userinfo is not allowed (SPIFFE Federation §5.2.1.1)`,
    );
  }
  if (url.hostname === '') throw new FetchError('ERR_FETCH_URL', `${what} ${url.href} has no host`);
  url.hash = '';
  return url;
}

function positiveInt(v: number | undefined, fallback: number, name: string, min = 1): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v < min)
    throw new TypeError(`fetchPeerBundle: ${name} must be an integer ≥ ${min}, got ${v}`);
  return v;
}

function resolve(req: FetchRequest): Resolved {
  if (!req || typeof req !== 'object') throw new TypeError('fetchPeerBundle: a request object is required');
  if (!req.trustDomain)
    throw new TypeError('fetchPeerBundle: trustDomain is required (it is never inferred from the URL)');
  if (!Array.isArray(req.urls) || req.urls.length === 0) {
    throw new TypeError('fetchPeerBundle: at least one URL is required');
  }
  // Every URL is checked before anything connects: a bad entry is a configuration error.
  const urls = req.urls.map((u) => checkEndpointUrl(u));
  const limits = req.limits ?? {};
  const connectTimeoutMs = positiveInt(
    limits.connectTimeoutMs,
    DEFAULT_CONNECT_TIMEOUT_MS,
    'connectTimeoutMs',
  );
  let timeoutMs = positiveInt(limits.timeoutMs, DEFAULT_FETCH_TIMEOUT_MS, 'timeoutMs');
  const maxBodyBytes = positiveInt(limits.maxBodyBytes, DEFAULT_MAX_BUNDLE_BYTES, 'maxBodyBytes');
  const maxKeys = positiveInt(limits.maxKeys, DEFAULT_MAX_BUNDLE_KEYS, 'maxKeys');
  const maxRedirects = positiveInt(limits.maxRedirects, DEFAULT_MAX_REDIRECTS, 'maxRedirects', 0);

  const headers: Record<string, string> = {
    Accept: 'application/json',
    'Accept-Encoding': 'identity',
    'User-Agent': 'spiffe-broker',
  };
  if (req.etag !== undefined) {
    if (typeof req.etag !== 'string' || req.etag === '' || /[\r\n\0]/.test(req.etag)) {
      throw new TypeError('fetchPeerBundle: etag must be a non-empty header-safe string');
    }
    headers['If-None-Match'] = req.etag;
  }
  if (req.waitSeconds !== undefined) {
    const w = req.waitSeconds;
    if (!Number.isSafeInteger(w) || w < 0 || w > MAX_WAIT_SECONDS) {
      throw new TypeError(
        `fetchPeerBundle: waitSeconds must be an integer in 0..${MAX_WAIT_SECONDS}, got ${w}`,
      );
    }
    // Only meaningful with a validator: without one the server has nothing to wait on.
    if (req.etag !== undefined && w > 0) {
      headers.Prefer = `wait=${w}`;
      // The held request is legitimately slow: the wait extends the deadline.
      timeoutMs += w * 1000;
    }
  }

  let auth: EndpointAuth;
  const p = req.profile;
  if (p?.kind === 'https_web') {
    if (p.caPem !== undefined) pemToDerList(p.caPem, 'CERTIFICATE'); // BundleError on a bad PEM
    auth = p.caPem === undefined ? { kind: 'https_web' } : { kind: 'https_web', caPem: p.caPem };
  } else if (p?.kind === 'https_spiffe') {
    if (!p.endpointSpiffeId) throw new TypeError('fetchPeerBundle: https_spiffe needs endpointSpiffeId');
    const bundles = p.bundles;
    if (!(bundles instanceof TrustBundle) && typeof bundles?.getBundleForTrustDomain !== 'function') {
      throw new TypeError('fetchPeerBundle: https_spiffe needs a TrustBundle or a BundleSource');
    }
    auth = { kind: 'https_spiffe', endpointSpiffeId: p.endpointSpiffeId, bundles };
  } else {
    throw new TypeError('fetchPeerBundle: profile.kind must be "https_web" or "https_spiffe"');
  }
  return { urls, auth, connectTimeoutMs, timeoutMs, maxBodyBytes, maxKeys, maxRedirects, headers };
}

type ResolvedDeps = Required<Omit<FetchDeps, 'connections'>> & Pick<FetchDeps, 'connections'>;

/** Failures after which the next URL is not tried: they would fail the same way everywhere. */
const NO_FAILOVER = new Set<ErrorCode>(['ERR_FETCH_ABORTED', 'ERR_FETCH_NO_BOOTSTRAP_BUNDLE']);

/** Printable, bounded excerpt of an error body. */
function excerpt(body: Uint8Array): string {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(body.subarray(0, ERROR_BODY_BYTES));
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '?').trim();
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** RFC 7240 §3: `Preference-Applied: wait=…` tells the client the wait was honoured. */
function appliedWait(res: ExchangeResponse): boolean {
  const v = res.headers['preference-applied'];
  const text = Array.isArray(v) ? v.join(',') : (v ?? '');
  return text.split(',').some((p) => /^\s*wait\s*(=|;|$)/i.test(p));
}

/** Rebuilds a broker error with extra context, same class and code. */
function withMessage(err: BrokerError, message: string): BrokerError {
  if (err instanceof FetchError) return new FetchError(err.code, message, { cause: err });
  if (err instanceof BundleError) return new BundleError(err.code, message, { cause: err });
  return err;
}

/** One configured URL: follow redirects (W6/W9, S8/S13), then interpret the final answer. */
async function attempt(
  req: FetchRequest,
  r: Resolved,
  configured: URL,
  deps: ResolvedDeps,
): Promise<Omit<FetchedBundle, 'failovers'> | Omit<FetchNotModified, 'failovers'>> {
  const deadline = deps.clock.now() + r.timeoutMs;
  let target = configured;
  let res: ExchangeResponse;
  for (let hops = 0; ; hops++) {
    res = await exchange(
      {
        target,
        auth: r.auth,
        headers: r.headers,
        connectTimeoutMs: r.connectTimeoutMs,
        deadline,
        maxBodyBytes: r.maxBodyBytes,
        signal: req.signal,
      },
      deps,
    );
    if (!isRedirect(res.status)) break;
    if (hops >= r.maxRedirects) {
      throw new FetchError(
        'ERR_FETCH_REDIRECT',
        `${configured.href}: more than ${r.maxRedirects} redirect(s) (last to ${target.href})`,
      );
    }
    const location = headerValue(res.headers.location);
    if (!location) {
      throw new FetchError(
        'ERR_FETCH_REDIRECT',
        `${target.href}: status ${res.status} without a Location header`,
      );
    }
    let next: URL;
    try {
      next = new URL(location, target);
    } catch {
      throw new FetchError(
        'ERR_FETCH_REDIRECT',
        `${target.href}: unusable redirect Location ${JSON.stringify(location)}`,
      );
    }
    // The target must itself be a valid endpoint URL (Federation §5.2.1.3, §5.2.2.3); the same
    // TLS checks — for https_spiffe the same SPIFFE ID — apply at the next hop. Never stored.
    try {
      next = checkEndpointUrl(next, 'redirect target');
    } catch (err) {
      throw new FetchError(
        'ERR_FETCH_REDIRECT',
        `${target.href}: redirect refused: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    target = next;
  }
  const redirected = target.href !== configured.href ? { redirectedTo: target.href } : {};
  const supportsLongPoll = appliedWait(res);
  const etag = headerValue(res.headers.etag);
  if (res.status === 304) {
    if (req.etag === undefined) {
      throw new FetchError(
        'ERR_FETCH_STATUS',
        `${target.href}: 304 Not Modified to an unconditional request`,
      );
    }
    return {
      kind: 'not-modified',
      etag: etag ?? req.etag,
      url: configured.href,
      supportsLongPoll,
      ...redirected,
    };
  }
  if (res.status !== 200) {
    const body = excerpt(res.body);
    throw new FetchError(
      'ERR_FETCH_STATUS',
      `${target.href}: unexpected status ${res.status} fetching bundle${body ? `: ${body}` : ''}`,
    );
  }
  let parsed: ReturnType<typeof parseBundle>;
  try {
    // The configured trust domain, never one derived from the URL (Federation §7.2).
    parsed = parseBundle(req.trustDomain, res.body, { maxBytes: r.maxBodyBytes, maxKeys: r.maxKeys });
  } catch (err) {
    if (err instanceof BundleError) throw withMessage(err, `${target.href}: ${err.message}`);
    throw err;
  }
  return {
    kind: 'bundle',
    bundle: parsed.bundle,
    ignored: parsed.ignored,
    ...(etag !== undefined ? { etag } : {}),
    url: configured.href,
    ...redirected,
    bytes: res.body.byteLength,
    supportsLongPoll,
  };
}

/**
 * Fetches and validates a peer's bundle once, changing nothing.
 *
 * URLs are tried in order. A failure that belongs to one endpoint — cannot connect, timeout, TLS
 * or endpoint-ID failure, bad redirect, non-200/304 status, malformed HTTP, oversize or unparsable
 * body — moves on to the next URL; cancellation and a missing bootstrap bundle stop at once. When
 * every URL fails, the last URL's error is thrown (same class and code) with the earlier ones
 * listed in its message.
 *
 * @example
 * const r = await fetchPeerBundle({
 *   trustDomain: TrustDomain.parse('peer.example'),
 *   urls: ['https://bundle.peer.example/'],
 *   profile: { kind: 'https_spiffe', endpointSpiffeId: SpiffeId.parse('spiffe://peer.example/spire/server'), bundles: bootstrap },
 * });
 * if (r.kind === 'bundle') console.log(r.bundle.sequence);
 * @throws FetchError / BundleError (coded, the URL in the message); BundleError
 *   `ERR_BUNDLE_PEM_INVALID` for an unreadable https_web CA; TypeError on API misuse.
 */
export async function fetchPeerBundle(req: FetchRequest, deps: FetchDeps = {}): Promise<FetchResult> {
  const r = resolve(req);
  const d: ResolvedDeps = {
    connect: deps.connect ?? ((o) => tls.connect(o)),
    clock: deps.clock ?? systemClock,
    connections: deps.connections,
  };
  const failovers: FetchFailover[] = [];
  let last: BrokerError | undefined;
  for (const url of r.urls) {
    if (req.signal?.aborted) {
      throw new FetchError('ERR_FETCH_ABORTED', `${url.href}: fetch aborted`, { cause: req.signal.reason });
    }
    try {
      const out = await attempt(req, r, url, d);
      return { ...out, failovers };
    } catch (err) {
      if (!(err instanceof BrokerError)) throw err;
      if (NO_FAILOVER.has(err.code)) throw err;
      last = err;
      failovers.push({ url: url.href, code: err.code, message: err.message });
    }
  }
  const final = last!;
  if (failovers.length === 1) throw final;
  const earlier = failovers
    .slice(0, -1)
    .map((f) => `${f.code}: ${f.message}`)
    .join('; ');
  throw withMessage(final, `${final.message} [all ${failovers.length} URLs failed; earlier: ${earlier}]`);
}
