import * as http from 'node:http';
import type * as tls from 'node:tls';
import { FetchError } from '../../errors.js';
import type { Clock } from '../../platform/clock.js';
import type { IdleConnection, IdleConnections } from './idle-connections.js';
import {
  authenticateSpiffeServer,
  type EndpointAuth,
  endpointBundle,
  hostOf,
  peerCertificateChain,
  sessionKey,
  tlsConnectOptions,
  tlsSessions,
} from './tls.js';

/**
 * One HTTPS GET to a bundle endpoint over a connection the broker opens and authenticates itself:
 * TCP + TLS with {@link tlsConnectOptions}, https_spiffe verification of the presented chain before
 * any HTTP is sent, then node:http's client on that socket, with the body counted while it is read.
 * No client certificate. With an {@link IdleConnections} pool a connection whose response ended
 * cleanly is kept for the endpoint's next fetch (HTTP/1.1 keep-alive), re-authenticated before
 * every reuse; without one, or when nothing is idle, a new connection (https_web resumes its TLS
 * session, see tlsSessions).
 * @module
 */

/** Opens a TLS connection (node:tls `connect` by default). */
export type TlsConnect = (options: tls.ConnectionOptions) => tls.TLSSocket;

/** What one exchange needs. */
export interface ExchangeRequest {
  readonly target: URL;
  readonly auth: EndpointAuth;
  readonly headers: Readonly<Record<string, string>>;
  /** TCP + TLS handshake limit, ms. */
  readonly connectTimeoutMs: number;
  /** Absolute deadline (clock ms) for the whole exchange, body included. */
  readonly deadline: number;
  /** Largest 200 body accepted, bytes. */
  readonly maxBodyBytes: number;
  readonly signal: AbortSignal | undefined;
}

/** Side effects of an exchange. */
export interface ExchangeDeps {
  readonly connect: TlsConnect;
  readonly clock: Clock;
  /** Kept-alive connections between fetches; absent: a connection per exchange, closed after it. */
  readonly connections?: IdleConnections | undefined;
}

/** What came back. */
export interface ExchangeResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** The whole body for 200; at most {@link ERROR_BODY_BYTES} for other non-3xx/304 statuses; else empty. */
  readonly body: Uint8Array;
}

/** How much of an error response's body is kept for the message (as SPIRE's client does). */
export const ERROR_BODY_BYTES = 1024;

/**
 * Largest TLS record the broker sends once a connection is up (`SSL_set_max_send_fragment`). All
 * it sends then is a request of a few hundred bytes, and on OpenSSL 3.0 (Node 20) a connection's
 * write buffer is sized by this limit and kept for the connection's life: 16 KiB by default. At
 * 1,024 a kept-alive connection holds ~12 KiB less (measured with 3,000 idle connections: 52 →
 * 40 KiB of RSS each; docs/scaling.md). Set after the handshake, so the handshake's own records
 * are the usual size. OpenSSL 3.5 (Node 24) sizes its buffers otherwise: no change there.
 */
export const REQUEST_SEND_FRAGMENT = 1024;

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** True for the redirect statuses followed (RFC 9110 §15.4). */
export function isRedirect(status: number): boolean {
  return REDIRECTS.has(status);
}

const NETWORK_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'ETIMEDOUT',
  'EPIPE',
]);

function errCode(err: unknown): string {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : '';
}

function errText(err: unknown): string {
  const code = errCode(err);
  const msg = err instanceof Error ? err.message : String(err);
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}

/**
 * The pool key of a connection to `target` under `auth`: everything its verification depended on.
 * https_web: the CA set's fingerprint, host and port (as the TLS session cache); https_spiffe: the
 * expected SPIFFE ID, host and port — its chain is checked again against the current bundle before
 * each reuse ({@link reusable}).
 */
export function connectionKey(target: URL, auth: EndpointAuth): string {
  if (auth.kind === 'https_web') return `web|${sessionKey(target, auth)}`;
  return `spiffe|${auth.endpointSpiffeId.toString()}|${hostOf(target)}|${target.port === '' ? 443 : target.port}`;
}

/**
 * May an idle connection serve this exchange? https_web: yes (its key pins the CA set and host it
 * was verified against). https_spiffe: only if the chain it presented is still a valid X509-SVID
 * of the expected ID under the bundle held now (Federation §5.2.2.4 — a rotated bundle that no
 * longer vouches for it, or an SVID past its notAfter, sends the fetch to a new connection).
 */
function reusable(conn: IdleConnection, req: ExchangeRequest, clock: Clock): boolean {
  if (req.auth.kind === 'https_web') return true;
  if (!conn.chain) return false;
  try {
    const bundle = endpointBundle(req.auth.endpointSpiffeId, req.auth.bundles, req.target.href);
    authenticateSpiffeServer(conn.chain, req.auth.endpointSpiffeId, bundle, clock.now(), req.target.href);
    return true;
  } catch {
    return false;
  }
}

/** A kept-alive connection the server had closed: the request is sent again on a new one. */
const STALE = Symbol('stale connection');

/**
 * Performs one GET. Resolves with the status, headers and (bounded) body; rejects with a coded
 * {@link FetchError} naming `target`. With `deps.connections`, an idle connection to the same
 * endpoint under the same trust is used first (several, if the server closed some), then a new
 * one; a connection whose 200/304/redirect response ended cleanly goes back to the pool.
 */
export async function exchange(req: ExchangeRequest, deps: ExchangeDeps): Promise<ExchangeResponse> {
  const pool = deps.connections?.enabled ? deps.connections : undefined;
  const key = pool ? connectionKey(req.target, req.auth) : undefined;
  if (pool && key !== undefined) {
    for (let conn = pool.take(key); conn; conn = pool.take(key)) {
      if (!reusable(conn, req, deps.clock)) {
        conn.socket.destroy();
        continue;
      }
      try {
        return await exchangeOn(req, deps, pool, key, conn);
      } catch (err) {
        if (err !== STALE) throw err;
      }
    }
  }
  return exchangeOn(req, deps, pool, key, undefined);
}

function exchangeOn(
  req: ExchangeRequest,
  deps: ExchangeDeps,
  pool: IdleConnections | undefined,
  key: string | undefined,
  reused: IdleConnection | undefined,
): Promise<ExchangeResponse> {
  const url = req.target.href;
  return new Promise<ExchangeResponse>((resolve, reject) => {
    let settled = false;
    let phase: 'tcp' | 'tls' | 'http' = reused ? 'http' : 'tcp';
    let socket: tls.TLSSocket | undefined = reused?.socket;
    let chain = reused?.chain;
    let responded = false;
    const timers = new AbortController();
    // Listeners this exchange puts on the socket, taken off before it goes back to the pool.
    const detach: (() => void)[] = [];
    const listen = (s: tls.TLSSocket, event: string, fn: Parameters<NodeJS.EventEmitter['on']>[1]): void => {
      s.on(event, fn);
      detach.push(() => s.off(event, fn));
    };

    const finish = (
      err: FetchError | typeof STALE | undefined,
      res?: ExchangeResponse,
      keep = false,
    ): void => {
      if (settled) return;
      settled = true;
      timers.abort(STALE);
      req.signal?.removeEventListener('abort', onAbort);
      if (keep && socket && pool && key !== undefined) {
        for (const off of detach) off();
        // node:http leaves the last request on the socket (`_httpMessage`) and only an http.Agent
        // clears it, on 'free'. Without an agent an idle kept connection would keep its last
        // ClientRequest, IncomingMessage and this exchange's closures alive until its next use:
        // ~100 MiB of heap at 10,000 kept connections (heap snapshot, bench/scale.bench.ts).
        (socket as unknown as { _httpMessage: unknown })._httpMessage = null;
        pool.put(key, chain ? { socket, chain } : { socket });
      } else socket?.destroy();
      if (err) reject(err);
      else resolve(res!);
    };
    const fail = (
      code: ConstructorParameters<typeof FetchError>[0],
      message: string,
      cause?: unknown,
    ): void =>
      finish(new FetchError(code, `${url}: ${message}`, cause === undefined ? undefined : { cause }));

    const onAbort = (): void => fail('ERR_FETCH_ABORTED', 'fetch aborted', req.signal?.reason);
    if (req.signal?.aborted) {
      onAbort();
      return;
    }
    req.signal?.addEventListener('abort', onAbort, { once: true });

    const after = (ms: number, fn: () => void): void => {
      deps.clock.sleep(Math.max(0, ms), timers.signal).then(fn, () => undefined);
    };
    const remaining = req.deadline - deps.clock.now();
    if (remaining <= 0) {
      fail('ERR_FETCH_TIMEOUT', 'no time left before the fetch deadline');
      return;
    }
    // The overall deadline also cuts off a peer that trickles its body.
    after(remaining, () =>
      fail('ERR_FETCH_TIMEOUT', `no complete response within the fetch deadline (${phase} phase)`),
    );

    const send = (conn: tls.TLSSocket): void => {
      const request = http.request({
        method: 'GET',
        path: `${req.target.pathname}${req.target.search}`,
        headers: { Host: req.target.host, Connection: pool ? 'keep-alive' : 'close', ...req.headers },
        setHost: false,
        createConnection: () => conn,
      });
      request.on('error', (err) => {
        // A kept-alive connection the server closed while it was idle: nothing was answered, so
        // the GET (idempotent) goes again on a new connection.
        if (reused && !responded && !settled) {
          finish(STALE);
          return;
        }
        const code = errCode(err);
        if (code.startsWith('HPE_'))
          fail('ERR_FETCH_PROTOCOL', `malformed HTTP response: ${errText(err)}`, err);
        else if (code.startsWith('ERR_SSL_') || /alert/i.test(errText(err))) {
          fail(
            'ERR_FETCH_TLS',
            `TLS failed after the handshake: ${errText(err)} (a server requiring a client certificate is refused: bundle endpoints must not, SPIFFE Federation §5.2.1.3)`,
            err,
          );
        } else
          fail('ERR_FETCH_PROTOCOL', `connection closed before a complete response: ${errText(err)}`, err);
      });
      request.on('response', (res) => {
        responded = true;
        const status = res.statusCode ?? 0;
        const headers = res.headers;
        // Kept only after a complete response the server did not ask to close (node:http has
        // decided that by 'end': shouldKeepAlive), and only for the statuses that are read whole.
        const keep = (): boolean => pool !== undefined && request.shouldKeepAlive && res.complete;
        if (status === 304 || isRedirect(status)) {
          res.on('end', () => finish(undefined, { status, headers, body: new Uint8Array() }, keep()));
          res.resume();
          return;
        }
        const ok = status === 200;
        const cap = ok ? req.maxBodyBytes : ERROR_BODY_BYTES;
        const declared = headers['content-length'];
        if (ok && declared !== undefined && Number(declared) > cap) {
          fail('ERR_FETCH_BODY_TOO_LARGE', `Content-Length ${declared} exceeds the ${cap}-byte limit`);
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        const done = (whole: boolean): void => {
          const body = Buffer.concat(chunks);
          finish(
            undefined,
            { status, headers, body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) },
            whole && ok && keep(),
          );
        };
        res.on('data', (chunk: Buffer) => {
          if (settled) return;
          size += chunk.length;
          if (size > cap) {
            if (ok) {
              // Cut the connection at once: never buffer past the cap.
              fail('ERR_FETCH_BODY_TOO_LARGE', `response body exceeds the ${cap}-byte limit`);
            } else {
              chunks.push(chunk.subarray(0, cap - (size - chunk.length)));
              size = cap;
              done(false);
            }
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => done(true));
        res.on('aborted', () => fail('ERR_FETCH_PROTOCOL', 'connection closed before the body was complete'));
        res.on('error', (err) => fail('ERR_FETCH_PROTOCOL', `error reading the body: ${errText(err)}`, err));
      });
      request.end();
    };

    if (reused) {
      // Checked by exchange() (reusable) just before: straight to HTTP.
      const s = reused.socket;
      listen(s, 'error', () => undefined); // the request reports it
      send(s);
      return;
    }

    after(Math.min(req.connectTimeoutMs, remaining), () => {
      if (phase !== 'http')
        fail('ERR_FETCH_TIMEOUT', `connecting (TCP + TLS) took longer than ${req.connectTimeoutMs} ms`);
    });

    let bundleFor: (() => Parameters<typeof authenticateSpiffeServer>[2]) | undefined;
    if (req.auth.kind === 'https_spiffe') {
      const auth = req.auth;
      try {
        // Resolve before dialing so a missing bootstrap bundle fails without touching the network.
        endpointBundle(auth.endpointSpiffeId, auth.bundles, url);
      } catch (err) {
        finish(err as FetchError);
        return;
      }
      bundleFor = () => endpointBundle(auth.endpointSpiffeId, auth.bundles, url);
    }

    try {
      socket = deps.connect(tlsConnectOptions(req.target, req.auth));
    } catch (err) {
      fail('ERR_FETCH_CONNECT', `cannot connect: ${errText(err)}`, err);
      return;
    }
    const s = socket;
    // https_web: keep the session the server hands out (TLS 1.3 tickets arrive after the handshake)
    // for the next new connection; forget it when this connection fails.
    const resumeKey = req.auth.kind === 'https_web' ? sessionKey(req.target, req.auth) : undefined;
    if (resumeKey !== undefined) {
      listen(s, 'session', (session: Buffer) => tlsSessions.set(resumeKey, session));
      listen(s, 'error', () => tlsSessions.delete(resumeKey));
    }
    listen(s, 'connect', () => {
      if (phase === 'tcp') phase = 'tls';
    });
    listen(s, 'error', (err: Error) => {
      if (phase === 'tcp') fail('ERR_FETCH_CONNECT', `cannot connect: ${errText(err)}`, err);
      // A reset or refusal mid-handshake is still "could not connect"; anything else is TLS.
      else if (phase === 'tls' && NETWORK_ERRNOS.has(errCode(err)) && errCode(err) !== 'ECONNRESET') {
        fail('ERR_FETCH_CONNECT', `connection lost during the TLS handshake: ${errText(err)}`, err);
      } else if (phase !== 'http') fail('ERR_FETCH_TLS', `TLS handshake failed: ${errText(err)}`, err);
      // http phase: the request reports it.
    });
    s.once('secureConnect', () => {
      if (settled) return;
      try {
        if (req.auth.kind === 'https_web') {
          // rejectUnauthorized already refused a bad chain or name; belt and braces.
          if (!s.authorized) {
            fail('ERR_FETCH_TLS', `server certificate not trusted: ${String(s.authorizationError)}`);
            return;
          }
        } else {
          // Federation §5.2.2.4: verify the X509-SVID before sending anything, with the bundle
          // held right now (the latest accepted one). The chain stays with a kept-alive
          // connection, to be checked again before every reuse.
          chain = peerCertificateChain(s);
          authenticateSpiffeServer(chain, req.auth.endpointSpiffeId, bundleFor!(), deps.clock.now(), url);
        }
      } catch (err) {
        finish(err as FetchError);
        return;
      }
      phase = 'http';
      s.setMaxSendFragment(REQUEST_SEND_FRAGMENT);
      send(s);
    });
  });
}
