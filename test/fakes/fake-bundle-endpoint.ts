import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A real HTTPS server on 127.0.0.1 (port 0) standing in for a peer's bundle endpoint, with a
 * scriptable handler and counters, so fetch tests can assert both the error and that nothing else
 * happened (no request sent to an unauthenticated server, no redirect followed, no second URL …).
 */
export interface FakeEndpointOptions {
  /** PEM certificate chain, leaf first. */
  readonly certPem: string;
  readonly keyPem: string;
  /** Ask for a client certificate; with `requireClientCert` refuse connections without one. */
  readonly requestCert?: boolean;
  readonly requireClientCert?: boolean;
  /** CA for client certificates when requested. */
  readonly clientCaPem?: string;
  readonly handler: (req: IncomingMessage, res: ServerResponse, server: FakeBundleEndpoint) => void;
}

export class FakeBundleEndpoint {
  /** HTTP requests received (method, url and headers), in order. */
  readonly requests: { method: string; url: string; headers: IncomingMessage['headers'] }[] = [];
  /**
   * TLS connections whose handshake the server completed. With TLS 1.3 a client that hangs up
   * right after its own handshake may beat this count: assert on {@link connections} for that.
   */
  secureConnections = 0;
  /** TCP connections accepted. */
  connections = 0;
  readonly #server: https.Server;
  readonly #sockets = new Set<Socket>();
  readonly #cleanups: (() => void)[] = [];
  #port = 0;

  private constructor(server: https.Server) {
    this.#server = server;
  }

  static async start(opts: FakeEndpointOptions): Promise<FakeBundleEndpoint> {
    const server = https.createServer({
      cert: opts.certPem,
      key: opts.keyPem,
      minVersion: 'TLSv1.2',
      requestCert: opts.requestCert ?? false,
      rejectUnauthorized: opts.requireClientCert ?? false,
      ...(opts.clientCaPem ? { ca: opts.clientCaPem } : {}),
    });
    const ep = new FakeBundleEndpoint(server);
    server.on('connection', (s: Socket) => {
      ep.connections++;
      ep.#sockets.add(s);
      s.on('close', () => ep.#sockets.delete(s));
    });
    server.on('secureConnection', () => {
      ep.secureConnections++;
    });
    server.on('tlsClientError', () => undefined);
    server.on('request', (req, res) => {
      ep.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      opts.handler(req, res, ep);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    ep.#port = (server.address() as AddressInfo).port;
    return ep;
  }

  get port(): number {
    return this.#port;
  }

  /** `https://127.0.0.1:<port><path>`. */
  url(path = '/'): string {
    return `https://127.0.0.1:${this.#port}${path}`;
  }

  /** `https://localhost:<port><path>` (for host name checks; tests dial 127.0.0.1). */
  localhostUrl(path = '/'): string {
    return `https://localhost:${this.#port}${path}`;
  }

  /** Registers something to undo at close (timers of trickling handlers). */
  onClose(fn: () => void): void {
    this.#cleanups.push(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.#cleanups) fn();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Serves `body` as JSON with optional extra headers. */
export function serveJson(body: string, headers: Record<string, string> = {}) {
  return (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, { 'Content-Type': 'application/json', ...headers });
    res.end(body);
  };
}
