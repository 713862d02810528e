import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../../errors.js';
import { sendError } from './http.js';

/** Host names a loopback listener answers to: a page on another name is DNS rebinding. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'] as const;

/** Methods that change nothing; every other method is a mutating request. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** `Sec-Fetch-Site` values a non-browser client or the broker's own origin would send. */
const SAME_SITE_FETCH = new Set(['same-origin', 'none']);

/** Options of {@link installRequestGuards}. */
export interface RequestGuardOptions {
  /**
   * The `Host` header values the listener answers, each `host` or `host:port` (IPv6 bracketed).
   * An entry without a port admits only the port the request arrived on. Default: derived from the
   * bound address — for a loopback bind `localhost`, `127.0.0.1`, `[::1]` and the bound address,
   * each with the bound port; no check on a Unix socket (no browser reaches one) or a wildcard or
   * other non-loopback bind (there the admin API is mTLS-only, and the health listener and verify
   * API answer the names the cluster gives them). `'any'` turns the check off.
   */
  readonly allowedHosts?: readonly string[] | 'any';
  /**
   * The bearer token every mutating request (any method but GET, HEAD, OPTIONS) must carry as
   * `Authorization: Bearer <token>` ({@link ensureAdminToken} makes it). `null` refuses every
   * mutating request; `undefined` installs no token check (apps without mutating routes).
   */
  readonly mutatingToken?: string | null;
  /** Refuse mutating requests carrying `Origin`, or a `Sec-Fetch-Site` other than same-origin/none. */
  readonly refuseCrossSite?: boolean;
}

/** A parsed `Host` header: lower-case name (IPv6 bracketed) and port, when given. */
interface HostHeader {
  readonly name: string;
  readonly port: number | undefined;
}

/** Parses `host` or `host:port` (RFC 9110 §7.2, RFC 3986 §3.2.2); undefined when malformed. */
export function parseHostHeader(value: string): HostHeader | undefined {
  const v = value.trim().toLowerCase();
  let name: string;
  let rest: string;
  if (v.startsWith('[')) {
    const close = v.indexOf(']');
    if (close === -1) return undefined;
    name = v.slice(0, close + 1);
    rest = v.slice(close + 1);
  } else {
    const colon = v.indexOf(':');
    name = colon === -1 ? v : v.slice(0, colon);
    rest = colon === -1 ? '' : v.slice(colon);
  }
  if (name === '' || name === '[]') return undefined;
  if (rest === '') return { name, port: undefined };
  if (!/^:[0-9]{1,5}$/.test(rest)) return undefined;
  const port = Number(rest.slice(1));
  return port > 0 && port < 65_536 ? { name, port } : undefined;
}

function isLoopbackAddress(address: string): boolean {
  return (
    address === '::1' || address === '::ffff:127.0.0.1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(address)
  );
}

/**
 * The `Host` values a listener bound at `address` answers by default (see
 * {@link RequestGuardOptions.allowedHosts}); `'any'` when no check applies.
 */
export function defaultAllowedHosts(address: AddressInfo | string | null): readonly string[] | 'any' {
  if (address === null) return [...LOOPBACK_NAMES]; // not listening (inject): loopback names, any port
  if (typeof address === 'string') return 'any'; // a Unix socket
  if (!isLoopbackAddress(address.address)) return 'any';
  const bound = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const names = new Set<string>([...LOOPBACK_NAMES, bound]);
  return [...names].map((n) => `${n}:${address.port}`);
}

function hostAllowed(host: HostHeader, allowed: readonly string[], localPort: number | undefined): boolean {
  for (const entry of allowed) {
    const e = parseHostHeader(entry);
    if (!e || e.name !== host.name) continue;
    // A Host without a port means the scheme's default (80): it must be the port itself.
    const asked = host.port ?? 80;
    const want = e.port ?? localPort;
    if (want === undefined || asked === want) return true;
  }
  return false;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Constant-time comparison of a presented token with the expected one. */
function tokenMatches(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

/**
 * Installs, on `app`, the checks that keep a browser on the broker's host from using a local API:
 * - every request's `Host` must be one the listener answers (DNS rebinding: a page on
 *   `evil.example` re-pointed at 127.0.0.1 sends `Host: evil.example`) → 421 `ERR_API_HOST`;
 * - with `refuseCrossSite`, a mutating request carrying `Origin` or a cross-site `Sec-Fetch-Site`
 *   (a form or `fetch` from another page; no preflight is needed for a body-less POST) → 403
 *   `ERR_API_CROSS_SITE`;
 * - with `mutatingToken`, a mutating request without `Authorization: Bearer <token>` → 401
 *   `ERR_API_UNAUTHORIZED` (any local process can reach loopback; only the broker's user can read
 *   the token file).
 */
export function installRequestGuards(app: FastifyInstance, opts: RequestGuardOptions = {}): void {
  let derived: readonly string[] | 'any' | undefined;
  const allowedHosts = (): readonly string[] | 'any' => {
    if (opts.allowedHosts !== undefined) return opts.allowedHosts;
    if (derived !== undefined) return derived;
    const address = app.server.listening ? app.server.address() : null;
    const hosts = defaultAllowedHosts(address);
    if (address !== null) derived = hosts; // fixed once bound
    return hosts;
  };
  const token = opts.mutatingToken;

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const allowed = allowedHosts();
    if (allowed !== 'any') {
      const raw = request.headers.host;
      const host = typeof raw === 'string' ? parseHostHeader(raw) : undefined;
      if (!host || !hostAllowed(host, allowed, request.raw.socket?.localPort)) {
        return sendError(
          reply,
          new ApiError(
            'ERR_API_HOST',
            `Host ${JSON.stringify(raw ?? '')} is not an address this listener serves (${allowed.join(', ')})`,
          ),
        );
      }
    }
    if (SAFE_METHODS.has(request.method)) return;
    if (opts.refuseCrossSite) {
      const site = request.headers['sec-fetch-site'];
      if (
        request.headers.origin !== undefined ||
        (site !== undefined && !SAME_SITE_FETCH.has(String(site)))
      ) {
        return sendError(
          reply,
          new ApiError(
            'ERR_API_CROSS_SITE',
            `${request.method} from a browser page (Origin or Sec-Fetch-Site: ${String(site ?? 'unset')}) is refused`,
          ),
        );
      }
    }
    if (token === undefined) return;
    const auth = request.headers.authorization;
    const presented = typeof auth === 'string' && /^Bearer /i.test(auth) ? auth.slice(7).trim() : undefined;
    if (token === null || presented === undefined || !tokenMatches(presented, token)) {
      reply.header('www-authenticate', 'Bearer realm="spiffe-broker-admin"');
      return sendError(
        reply,
        new ApiError(
          'ERR_API_UNAUTHORIZED',
          token === null
            ? 'this admin API was started without an admin token: mutating routes are disabled'
            : presented === undefined
              ? `${request.method} needs "Authorization: Bearer <token>" with the admin token (the CLI reads it with --token-file or --state-dir)`
              : 'the admin token does not match',
        ),
      );
    }
  });
}
