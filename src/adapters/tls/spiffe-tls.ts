import { constants as cryptoConstants } from 'node:crypto';
import { Agent, type AgentOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import {
  type ConnectionOptions,
  type DetailedPeerCertificate,
  type TLSSocket,
  type TlsOptions,
  type Server as TlsServer,
  connect as tlsConnect,
} from 'node:tls';
import type { BundleSource } from '../../core/bundle/source.js';
import type { SpiffeIdMatcher } from '../../core/spiffeid/matcher.js';
import { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { parseCertificateDer } from '../../core/verify/der.js';
import { X509VerifyCache } from '../../core/verify/x509-cache.js';
import { verifyX509Svid, type X509SvidVerifyResult } from '../../core/verify/x509-svid.js';
import { BrokerError, MtlsError, VerifyError } from '../../errors.js';
import { type SvidSource, toSvidSource, type X509SvidMaterial } from './svid.js';

/** Default {@link SpiffeTlsOptions.handshakeTimeoutMs}: connect plus handshake. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Most certificates taken from a peer's chain; the verifier caps the chain further. */
const MAX_PEER_CHAIN = 16;

/** Options of {@link tlsOptions}. */
export interface SpiffeTlsOptions {
  /**
   * The bundles peers are verified against — always the bundle of the peer's own trust domain,
   * read at every handshake, so a rotated bundle is in force for the next connection.
   */
  readonly source: BundleSource;
  /** Which peer SPIFFE IDs are accepted (both as clients of a server and as servers of a client). */
  readonly authorize: SpiffeIdMatcher;
  /** The local X509-SVID: fixed material, or a source that rotates (e.g. an {@link SvidHolder}). */
  readonly svid: SvidSource | X509SvidMaterial;
  /** Verification time, ms since the epoch. Default `Date.now`. */
  readonly now?: () => number;
  /** Remembers verified peer chains; a fresh one by default. */
  readonly cache?: X509VerifyCache;
  /** Connect plus handshake deadline of {@link SpiffeTls.connect}, ms. Default 10 000. */
  readonly handshakeTimeoutMs?: number;
}

/** What {@link SpiffeTls.connect} takes. */
export interface SpiffeConnectOptions {
  readonly host: string;
  readonly port: number;
  /** SNI name; default none for IP addresses, the host name otherwise (Node's default). */
  readonly servername?: string;
  /** Overrides the matcher for this connection (e.g. the one server ID this client expects). */
  readonly authorize?: SpiffeIdMatcher;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/**
 * The DER chain a TLS peer presented, leaf first, from `getPeerCertificate(true)` (which orders the
 * presented certificates by issuer). Empty when the peer presented none.
 */
export function peerChain(socket: TLSSocket): Uint8Array[] {
  // An empty object when the peer presented no certificate.
  const leaf: Partial<DetailedPeerCertificate> = socket.getPeerCertificate(true);
  const out: Uint8Array[] = [];
  const seen = new Set<string>();
  let c: Partial<DetailedPeerCertificate> | undefined = leaf;
  while (c?.raw && c.fingerprint256 && out.length < MAX_PEER_CHAIN && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(new Uint8Array(c.raw));
    c = c.issuerCertificate;
  }
  return out;
}

/**
 * The SPIFFE ID a presented chain's leaf claims — UNVERIFIED: for choosing which bundles to read
 * and for bounded metric labels, never for a decision. Undefined when the leaf has no single
 * SPIFFE ID URI SAN or does not parse.
 */
export function claimedSpiffeId(chain: readonly Uint8Array[]): SpiffeId | undefined {
  if (chain.length === 0) return undefined;
  try {
    const uris = parseCertificateDer(chain[0]!).uris;
    return uris.length === 1 ? SpiffeId.tryParse(uris[0]!) : undefined;
  } catch {
    return undefined;
  }
}

/** A coded error for a failed TLS connection: `ERR_MTLS_CONNECT` before TCP is up, else `ERR_MTLS_HANDSHAKE`. */
export function connectError(err: unknown, where: string): BrokerError {
  if (err instanceof BrokerError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? '';
  const message = e instanceof Error ? e.message : String(err);
  if (/^(ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EADDRNOTAVAIL)$/.test(code)) {
    return new MtlsError('ERR_MTLS_CONNECT', `${where}: ${message}`, { cause: err });
  }
  return new MtlsError('ERR_MTLS_HANDSHAKE', `${where}: ${message}`, { cause: err });
}

/**
 * Sidecar-less SPIFFE mTLS for Node `tls` and `https` servers and clients.
 *
 * Peer verification is done by the broker's own X509-SVID verifier, not OpenSSL's chain building:
 * both sides run TLS with `requestCert: true, rejectUnauthorized: false`, and right after the
 * handshake the peer's presented chain is verified against the bundle of the peer's OWN trust
 * domain from the {@link BundleSource} (never a merged pool), and its SPIFFE ID against the matcher.
 * A refused peer's connection is destroyed before a byte of application data is read or written:
 * a server secured with {@link SpiffeTls.secure} drops it in its `secureConnection` handler; a client
 * gets its socket from {@link SpiffeTls.connect} or {@link SpiffeTls.agent} only once the server
 * verified. Because the source is consulted at each handshake, bundle rotation takes effect with
 * the next connection, without a restart; the local SVID rotates through its {@link SvidSource}.
 *
 * @example
 * const mtls = tlsOptions({ source: bundles, authorize: matchMemberOf(peerTd), svid });
 * const server = https.createServer(mtls.serverOptions(), handler);
 * mtls.secure(server);
 * const res = await fetchWithAgent('https://peer:8443/', { agent: mtls.agent() });
 */
export class SpiffeTls {
  readonly svid: SvidSource;
  readonly #source: BundleSource;
  readonly #authorize: SpiffeIdMatcher;
  readonly #now: () => number;
  readonly #cache: X509VerifyCache;
  readonly #timeoutMs: number;
  readonly #verified = new WeakMap<TLSSocket, SpiffeId>();

  constructor(opts: SpiffeTlsOptions) {
    if (typeof opts?.source?.getBundleForTrustDomain !== 'function') {
      throw new TypeError('tlsOptions: source must implement getBundleForTrustDomain');
    }
    if (typeof opts.authorize !== 'function')
      throw new TypeError('tlsOptions: authorize must be a SpiffeIdMatcher');
    this.svid = toSvidSource(opts.svid);
    this.#source = opts.source;
    this.#authorize = opts.authorize;
    this.#now = opts.now ?? Date.now;
    this.#cache = opts.cache ?? new X509VerifyCache();
    this.#timeoutMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  }

  /** Key and certificate chain of the current SVID. */
  #credentials(): { key: string; cert: string } {
    const m = this.svid.current();
    return { key: m.privateKeyPem, cert: m.certChainPem };
  }

  /**
   * Options for `tls.createServer` / `https.createServer`: the current SVID, a client certificate
   * requested but judged by {@link SpiffeTls.verify} rather than OpenSSL, TLS ≥ 1.2, and no session
   * tickets (a resumed session would skip the per-connection verification's input). Pass the
   * server to {@link SpiffeTls.secure} — without it, no client is verified.
   */
  serverOptions(): TlsOptions {
    return {
      ...this.#credentials(),
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
    };
  }

  /**
   * Options for `tls.connect` / `https.request` with the current SVID and OpenSSL's verification
   * off. Callers using these directly MUST call {@link SpiffeTls.verify} on `secureConnect` before
   * writing; {@link SpiffeTls.connect} and {@link SpiffeTls.agent} do that for you.
   */
  clientOptions(): ConnectionOptions {
    return { ...this.#credentials(), rejectUnauthorized: false, minVersion: 'TLSv1.2' };
  }

  /**
   * Verifies the peer of an established TLS socket: its presented chain against the bundle of its
   * own trust domain, its SPIFFE ID against the matcher. Never throws for a bad peer.
   */
  verify(socket: TLSSocket, authorize: SpiffeIdMatcher = this.#authorize): X509SvidVerifyResult {
    const chain = peerChain(socket);
    if (chain.length === 0) {
      return { ok: false, code: 'ERR_VERIFY_INPUT', message: 'the peer presented no certificate' };
    }
    const r = verifyX509Svid(chain, this.#source, { now: this.#now(), authorize, cache: this.#cache });
    if (r.ok) this.#verified.set(socket, r.id);
    return r;
  }

  /** The verified SPIFFE ID of a socket's peer, or undefined when it was not (yet) verified. */
  peerId(socket: TLSSocket): SpiffeId | undefined {
    return this.#verified.get(socket);
  }

  /**
   * Verifies every client of `server` as it connects — a refused client is destroyed before any
   * request is read, and `onRefused` hears why — and keeps the server's certificate current by
   * swapping its secure context on every SVID rotation. The check runs before every other
   * `secureConnection` listener: in a `tls.createServer` callback, {@link SpiffeTls.peerId} is the
   * verified ID, and a refused socket is already destroyed (`socket.destroyed`).
   * @returns a function that detaches both.
   */
  secure(server: TlsServer, onRefused?: (error: VerifyError, socket: TLSSocket) => void): () => void {
    const onConnection = (socket: TLSSocket): void => {
      const r = this.verify(socket);
      if (r.ok) return;
      const error = new VerifyError(r.code, `client refused: ${r.message}`);
      onRefused?.(error, socket);
      socket.destroy();
    };
    // First in line, so later listeners (the `tls.createServer` callback, https's request parser)
    // see a verified socket — or one already destroyed.
    server.prependListener('secureConnection', onConnection);
    const unsubscribe = this.svid.subscribe(() => server.setSecureContext(this.serverOptions()));
    return () => {
      server.off('secureConnection', onConnection);
      unsubscribe();
    };
  }

  /**
   * Opens an mTLS connection and resolves only once the server's SVID verified; a refused server
   * rejects with a {@link VerifyError} (the socket is destroyed, nothing was written).
   * @throws MtlsError `ERR_MTLS_CONNECT`, `ERR_MTLS_HANDSHAKE`, `ERR_MTLS_TIMEOUT`; VerifyError.
   */
  connect(opts: SpiffeConnectOptions): Promise<TLSSocket> {
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    const where = `mTLS connection to ${opts.host}:${opts.port}`;
    return new Promise<TLSSocket>((resolve, reject) => {
      if (opts.signal?.aborted) {
        reject(opts.signal.reason);
        return;
      }
      const socket = tlsConnect({
        ...this.clientOptions(),
        host: opts.host,
        port: opts.port,
        ...(opts.servername !== undefined ? { servername: opts.servername } : {}),
      });
      let settled = false;
      const finish = (err: unknown, ok?: TLSSocket): void => {
        if (settled) return;
        settled = true;
        socket.setTimeout(0);
        socket.off('error', onError);
        opts.signal?.removeEventListener('abort', onAbort);
        if (ok) resolve(ok);
        else {
          socket.destroy();
          reject(err);
        }
      };
      const onError = (err: Error): void => finish(connectError(err, where));
      const onAbort = (): void => finish(opts.signal?.reason);
      socket.once('error', onError);
      socket.setTimeout(timeoutMs, () =>
        finish(new MtlsError('ERR_MTLS_TIMEOUT', `${where}: no handshake within ${timeoutMs} ms`)),
      );
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      socket.once('secureConnect', () => {
        const r = this.verify(socket, opts.authorize ?? this.#authorize);
        if (r.ok) finish(undefined, socket);
        else finish(new VerifyError(r.code, `server refused: ${r.message}`));
      });
    });
  }

  /**
   * An `https.Agent` whose connections are made by {@link SpiffeTls.connect}: a request is written
   * only after the server's SVID verified. Give it to `https.request`/`https.get`.
   */
  agent(options: AgentOptions = {}): Agent {
    return new SpiffeAgent(this, options);
  }
}

/** An https.Agent that hands out only verified mTLS connections. */
class SpiffeAgent extends Agent {
  readonly #mtls: SpiffeTls;

  constructor(mtls: SpiffeTls, options: AgentOptions) {
    super(options);
    this.#mtls = mtls;
  }

  override createConnection(
    options: {
      host?: string | null;
      hostname?: string | null;
      port?: number | string | null;
      servername?: string;
    },
    callback?: (err: Error | null, stream: Duplex) => void,
  ): undefined {
    const host = options.hostname ?? options.host ?? 'localhost';
    this.#mtls
      .connect({
        host,
        port: Number(options.port ?? 443),
        ...(options.servername ? { servername: options.servername } : {}),
      })
      .then(
        (socket) => callback?.(null, socket),
        (err: Error) => callback?.(err, undefined as unknown as Duplex),
      );
    return undefined;
  }
}

/**
 * Sidecar-less SPIFFE mTLS options for Node's `tls` and `https`: see {@link SpiffeTls}.
 *
 * @example
 * import { tlsOptions, SvidHolder } from 'spiffe-broker/tls';
 * const mtls = tlsOptions({ source, authorize: matchId(expectedPeer), svid: new SvidHolder(material) });
 * const server = tls.createServer(mtls.serverOptions(), onSocket);
 * mtls.secure(server);
 * const socket = await mtls.connect({ host: 'peer.example', port: 8443 });
 */
export function tlsOptions(opts: SpiffeTlsOptions): SpiffeTls {
  return new SpiffeTls(opts);
}
