import * as http from 'node:http';
import type * as tls from 'node:tls';
import { FetchError } from '../../errors.js';
import type { Clock } from '../../platform/clock.js';
import {
  authenticateSpiffeServer,
  type EndpointAuth,
  endpointBundle,
  peerCertificateChain,
  sessionKey,
  tlsConnectOptions,
  tlsSessions,
} from './tls.js';

/**
 * One HTTPS GET to a bundle endpoint over a connection the broker opens and authenticates itself:
 * TCP + TLS with {@link tlsConnectOptions}, https_spiffe verification of the presented chain before
 * any HTTP is sent, then node:http's client on that socket, with the body counted while it is read.
 * No connection reuse, no client certificate; https_web resumes TLS sessions (see tlsSessions).
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
 * Performs one GET. Resolves with the status, headers and (bounded) body; rejects with a coded
 * {@link FetchError} naming `target`.
 */
export function exchange(req: ExchangeRequest, deps: ExchangeDeps): Promise<ExchangeResponse> {
  const url = req.target.href;
  return new Promise<ExchangeResponse>((resolve, reject) => {
    let settled = false;
    let phase: 'tcp' | 'tls' | 'http' = 'tcp';
    let socket: tls.TLSSocket | undefined;
    const timers = new AbortController();

    const finish = (err: FetchError | undefined, res?: ExchangeResponse): void => {
      if (settled) return;
      settled = true;
      timers.abort();
      req.signal?.removeEventListener('abort', onAbort);
      socket?.destroy();
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
    // for the next poll; forget it when this connection fails.
    const resumeKey = req.auth.kind === 'https_web' ? sessionKey(req.target, req.auth) : undefined;
    if (resumeKey !== undefined) {
      s.on('session', (session: Buffer) => tlsSessions.set(resumeKey, session));
      s.once('error', () => tlsSessions.delete(resumeKey));
    }
    s.on('connect', () => {
      if (phase === 'tcp') phase = 'tls';
    });
    s.on('error', (err) => {
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
          // held right now (the latest accepted one).
          authenticateSpiffeServer(
            peerCertificateChain(s),
            req.auth.endpointSpiffeId,
            bundleFor!(),
            deps.clock.now(),
            url,
          );
        }
      } catch (err) {
        finish(err as FetchError);
        return;
      }
      phase = 'http';
      send(s);
    });

    const send = (conn: tls.TLSSocket): void => {
      const request = http.request({
        method: 'GET',
        path: `${req.target.pathname}${req.target.search}`,
        headers: { Host: req.target.host, Connection: 'close', ...req.headers },
        setHost: false,
        createConnection: () => conn,
      });
      request.on('error', (err) => {
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
        const status = res.statusCode ?? 0;
        const headers = res.headers;
        if (status === 304 || isRedirect(status)) {
          res.resume();
          finish(undefined, { status, headers, body: new Uint8Array() });
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
        const done = (): void => {
          const body = Buffer.concat(chunks);
          finish(undefined, {
            status,
            headers,
            body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength),
          });
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
              done();
            }
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', done);
        res.on('aborted', () => fail('ERR_FETCH_PROTOCOL', 'connection closed before the body was complete'));
        res.on('error', (err) => fail('ERR_FETCH_PROTOCOL', `error reading the body: ${errText(err)}`, err));
      });
      request.end();
    };
  });
}
