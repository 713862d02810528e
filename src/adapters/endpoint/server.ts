import type { Server } from 'node:http';
import { createServer, type ServerOptions } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { EndpointError } from '../../errors.js';
import { type BundleEndpointApp, type BundleEndpointOptions, buildBundleEndpointApp } from './app.js';
import { defaultEndpointDeps } from './deps.js';
import type { TlsCredentialSource, TlsCredentials } from './tls-credentials.js';

/**
 * TLS 1.2 cipher suites of Mozilla's "intermediate" configuration (SPIFFE Federation §5: servers
 * must meet it). TLS 1.3 suites are OpenSSL's defaults, all of which that profile allows.
 */
export const INTERMEDIATE_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Options of {@link startBundleEndpoint}. */
export interface BundleEndpointServerOptions extends BundleEndpointOptions {
  /** Address to bind, e.g. `0.0.0.0` or `127.0.0.1`. */
  readonly host: string;
  /** TCP port; 0 picks a free one (see {@link RunningBundleEndpoint.port}). */
  readonly port: number;
  /**
   * The server certificate: {@link FileTlsCredentials} for https_web, {@link MintedSvidCredentials}
   * for https_spiffe. Its `run` is driven by the server for as long as it listens.
   */
  readonly credentials: TlsCredentialSource;
  /** Keep-alive timeout of idle connections, ms. Default 72 s. */
  readonly keepAliveTimeoutMs?: number;
  /**
   * A client must send its whole request head within this time, ms (slowloris). Default 10 s.
   * Held long-polls are unaffected: their head arrived at once.
   */
  readonly headersTimeoutMs?: number;
  /** Most open connections (held long-polls included); more are refused at accept. Default 20,000. */
  readonly maxConnections?: number;
  /**
   * A connection must complete its TLS handshake within this time, ms, or it is closed. Default
   * 10 s (Node's own default, 120 s, lets ~167 silent connections a second hold the whole
   * connection cap).
   */
  readonly handshakeTimeoutMs?: number;
  /**
   * Most open connections from one source address (IPv4-mapped IPv6 counted as IPv4); more are
   * closed at accept, before TLS. Default 256.
   */
  readonly maxConnectionsPerAddress?: number;
}

/** Default {@link BundleEndpointServerOptions.handshakeTimeoutMs}. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Default {@link BundleEndpointServerOptions.maxConnectionsPerAddress}. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256;

/** The source address a connection is counted under: `::ffff:1.2.3.4` is `1.2.3.4`. */
function sourceOf(socket: Socket): string {
  const a = socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

/**
 * Caps the open connections of each source address: a connection past `limit` is destroyed as it
 * is accepted, before any TLS work. The count drops when a connection closes. Per connection this
 * costs a Map entry and one shared listener — no closure or `once` wrapper, which at 10,000 held
 * long-polls were ~40,000 objects for every GC to mark.
 */
function limitPerAddress(server: Server, limit: number): void {
  const open = new Map<string, number>();
  const sourceOfOpen = new Map<Socket, string>();
  function onClose(this: Socket): void {
    const source = sourceOfOpen.get(this);
    if (source === undefined) return;
    sourceOfOpen.delete(this);
    const left = (open.get(source) ?? 1) - 1;
    if (left <= 0) open.delete(source);
    else open.set(source, left);
  }
  server.on('connection', (socket: Socket) => {
    const source = sourceOf(socket);
    const n = open.get(source) ?? 0;
    if (n >= limit) {
      socket.destroy();
      return;
    }
    open.set(source, n + 1);
    sourceOfOpen.set(socket, source);
    socket.on('close', onClose);
  });
}

function positiveInteger(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1)
    throw new TypeError(`startBundleEndpoint: ${name} must be a positive integer`);
  return v;
}

/** A listening bundle endpoint. */
export interface RunningBundleEndpoint {
  readonly app: BundleEndpointApp;
  /** The bound address and port (the real port when 0 was asked). */
  readonly host: string;
  readonly port: number;
  /** `https://<host>:<port>/` (IPv6 hosts bracketed). */
  readonly url: string;
  /** Settles when the server has closed (after the signal aborted), rejecting if closing failed. */
  readonly closed: Promise<void>;
}

function contextOptions(c: TlsCredentials): SecureContextOptions {
  // SPIFFE Federation §5 (Mozilla intermediate): TLS ≥ 1.2 with forward-secret AEAD suites.
  return {
    cert: c.certChainPem,
    key: c.keyPem,
    minVersion: 'TLSv1.2',
    ciphers: INTERMEDIATE_TLS12_CIPHERS,
    honorCipherOrder: false,
  };
}

/**
 * Starts the bundle endpoint on `host:port` over HTTPS and resolves once it listens. The TLS
 * credentials are loaded first (a coded error if unusable) and then kept current: every new pair
 * is installed with `server.setSecureContext()`, so established connections keep their session
 * and new handshakes get the new certificate. No client certificate is requested (SPIFFE
 * Federation §5.2.1.3 / §5.2.2.3). When `signal` aborts, held requests are answered (304) and
 * the server closes.
 *
 * @throws EndpointError `ERR_ENDPOINT_LISTEN`, or the credential source's error
 * @example
 * const ep = await startBundleEndpoint({ host: '0.0.0.0', port: 8443, local, credentials }, signal);
 * console.log(ep.url);
 */
export async function startBundleEndpoint(
  opts: BundleEndpointServerOptions,
  signal: AbortSignal,
): Promise<RunningBundleEndpoint> {
  const logger = defaultEndpointDeps(opts.deps).logger;
  const credentials = opts.credentials;
  const first = await credentials.ready(signal);
  let server: Server | undefined;
  // Bound slow clients (slowloris): the request head must arrive quickly; a request body is never
  // expected (GET only) and a held long-poll lasts at most 60 s. Node checks these timeouts every
  // connectionsCheckingInterval, so that follows the header timeout.
  const headersTimeout = opts.headersTimeoutMs ?? 10_000;
  // Bound silent connections too: one that never starts (or finishes) its TLS handshake is closed
  // after handshakeTimeout, and no source address holds more than its share of the connection cap.
  const handshakeTimeout = positiveInteger(
    'handshakeTimeoutMs',
    opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
  );
  const perAddress = positiveInteger(
    'maxConnectionsPerAddress',
    opts.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  );
  const serverOptions: ServerOptions = {
    ...contextOptions(first),
    handshakeTimeout,
    requestCert: false,
    ALPNProtocols: ['http/1.1'],
    headersTimeout,
    requestTimeout: Math.max(headersTimeout, 75_000),
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(headersTimeout / 4))),
  };
  const app = await buildBundleEndpointApp({
    ...opts,
    serverFactory: (handler) => {
      server = createServer(serverOptions, handler as never) as unknown as Server;
      server.maxConnections = opts.maxConnections ?? 20_000;
      limitPerAddress(server, perAddress);
      // A handshake that timed out or failed is the client's problem; the socket is already closed.
      server.on('tlsClientError', () => undefined);
      return server;
    },
  });
  const unsubscribe = credentials.subscribe((next) => {
    (server as unknown as { setSecureContext(o: SecureContextOptions): void }).setSecureContext(
      contextOptions(next),
    );
    logger.info('bundle endpoint now presents new TLS credentials', {
      origin: next.origin,
      notAfter: new Date(next.notAfter).toISOString(),
    });
  });
  try {
    await app.listen({ host: opts.host, port: opts.port });
  } catch (cause) {
    unsubscribe();
    await app.close();
    throw new EndpointError(
      'ERR_ENDPOINT_LISTEN',
      `the bundle endpoint cannot listen on ${opts.host}:${opts.port}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
  const address = app.server.address() as AddressInfo;
  const credentialsDone = new AbortController();
  const refreshing = credentials.run(credentialsDone.signal).catch((err: unknown) => {
    logger.error('bundle endpoint TLS credential refresh stopped', { error: String(err) });
  });
  const closed = new Promise<void>((resolve, reject) => {
    const close = (): void => {
      unsubscribe();
      credentialsDone.abort();
      app
        .close()
        .then(() => refreshing)
        .then(resolve, reject);
    };
    if (signal.aborted) close();
    else signal.addEventListener('abort', close, { once: true });
  });
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  logger.info('bundle endpoint listening', { url: `https://${host}:${address.port}/` });
  return { app, host: address.address, port: address.port, url: `https://${host}:${address.port}/`, closed };
}

/**
 * {@link startBundleEndpoint} as a long-running task: serves until `signal` aborts, then closes.
 * `onListening` receives the bound endpoint (useful with port 0).
 */
export async function runBundleEndpoint(
  opts: BundleEndpointServerOptions & { readonly onListening?: (ep: RunningBundleEndpoint) => void },
  signal: AbortSignal,
): Promise<void> {
  const ep = await startBundleEndpoint(opts, signal);
  opts.onListening?.(ep);
  await ep.closed;
}
