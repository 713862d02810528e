import type { Server } from 'node:http';
import { createServer, type ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { isLoopbackHost } from '../../engine/config/broker-config.js';
import { EndpointError } from '../../errors.js';
import { defaultEndpointDeps, type EndpointDeps } from '../endpoint/deps.js';
import { INTERMEDIATE_TLS12_CIPHERS } from '../endpoint/server.js';
import type { TlsCredentialSource, TlsCredentials } from '../endpoint/tls-credentials.js';
import { buildOidcDiscoveryApp, type OidcDiscoveryAppOptions } from './app.js';

/** Options of {@link OidcDiscoveryServer}. */
export interface OidcDiscoveryServerOptions extends Omit<OidcDiscoveryAppOptions, 'serverFactory'> {
  /** Address to bind. Without `credentials` it must be a loopback address. */
  readonly host: string;
  /** TCP port; 0 picks a free one. */
  readonly port: number;
  /**
   * The server certificate (e.g. {@link FileTlsCredentials}): the listener speaks HTTPS and keeps
   * the credentials current. Absent: plain HTTP on loopback, for a TLS-terminating proxy in front.
   */
  readonly credentials?: TlsCredentialSource;
  /** Hears the listener's base URL (`https://host:port` or `http://…`) once it listens. */
  readonly onListening?: (url: string) => void;
  readonly deps?: Partial<EndpointDeps>;
}

function contextOptions(c: TlsCredentials): SecureContextOptions {
  return { cert: c.certChainPem, key: c.keyPem, minVersion: 'TLSv1.2', ciphers: INTERMEDIATE_TLS12_CIPHERS };
}

/**
 * The OIDC discovery listener of the local trust domain's JWT-SVIDs, on its own address: HTTPS
 * with the configured certificate (reloaded as the files change), or plain HTTP on loopback
 * behind a TLS-terminating proxy (OIDC consumers fetch the issuer over https only). Serves
 * {@link buildOidcDiscoveryApp} until the signal aborts.
 *
 * @example
 * const oidc = new OidcDiscoveryServer({ host: '0.0.0.0', port: 8444, issuer, local, credentials });
 * await oidc.run(signal);
 */
export class OidcDiscoveryServer {
  readonly #opts: OidcDiscoveryServerOptions;
  #url: string | undefined;

  constructor(opts: OidcDiscoveryServerOptions) {
    if (!opts.credentials && !isLoopbackHost(opts.host)) {
      throw new TypeError(
        `OIDC discovery on ${opts.host} without TLS credentials: plain HTTP is only served on loopback`,
      );
    }
    this.#opts = opts;
  }

  /** The listener's base URL once it listens. */
  get url(): string | undefined {
    return this.#url;
  }

  /**
   * Listens until `signal` aborts, then closes.
   * @throws EndpointError `ERR_ENDPOINT_LISTEN`, or the credential source's error
   */
  async run(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    const o = this.#opts;
    const logger = defaultEndpointDeps(o.deps).logger;
    const credentials = o.credentials;
    let server: Server | undefined;
    let serverFactory: OidcDiscoveryAppOptions['serverFactory'];
    if (credentials) {
      const first = await credentials.ready(signal);
      const serverOptions: ServerOptions = {
        ...contextOptions(first),
        requestCert: false,
        ALPNProtocols: ['http/1.1'],
        handshakeTimeout: 10_000,
        headersTimeout: 10_000,
        requestTimeout: 30_000,
      };
      serverFactory = (handler) => {
        server = createServer(serverOptions, handler as never) as unknown as Server;
        server.on('tlsClientError', () => undefined);
        return server;
      };
    }
    const app = await buildOidcDiscoveryApp({ ...o, ...(serverFactory ? { serverFactory } : {}) });
    const unsubscribe = credentials?.subscribe((next) => {
      (server as unknown as { setSecureContext(c: SecureContextOptions): void }).setSecureContext(
        contextOptions(next),
      );
      logger.info('OIDC discovery listener now presents new TLS credentials', { origin: next.origin });
    });
    try {
      await app.listen({ host: o.host, port: o.port });
    } catch (cause) {
      unsubscribe?.();
      await app.close();
      throw new EndpointError(
        'ERR_ENDPOINT_LISTEN',
        `the OIDC discovery listener cannot listen on ${o.host}:${o.port}: ${cause instanceof Error ? cause.message : String(cause)}`,
        { cause },
      );
    }
    const address = app.server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.#url = `${credentials ? 'https' : 'http'}://${host}:${address.port}`;
    logger.info('OIDC discovery listening', { url: this.#url, issuer: o.issuer });
    // JWKS consumers (go-oidc and the like) fetch the keys when a token names an unknown kid: while
    // discovery is served the local bundle stays at its fast poll cadence, so a JWT authority SPIRE
    // prepares is in the JWKS within a poll, not within the idle cadence.
    const unwatch = o.local.watch?.();
    o.onListening?.(this.#url);
    const credentialsDone = new AbortController();
    const refreshing = credentials?.run(credentialsDone.signal).catch((err: unknown) => {
      logger.error('OIDC discovery TLS credential refresh stopped', { error: String(err) });
    });
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    unwatch?.();
    unsubscribe?.();
    credentialsDone.abort();
    await app.close();
    await refreshing;
  }
}
