import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  DEFAULT_JWKS_PATH,
  defaultJwksUri,
  OIDC_DISCOVERY_PATH,
  renderJwks,
  renderOidcDiscovery,
} from '../../core/bundle/oidc.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { PublishedBundleProvider } from '../endpoint/app.js';
import { evaluateIfNoneMatch } from '../endpoint/conditional.js';
import type { PublishedBundle } from '../endpoint/local-bundle.js';

/** Default `Cache-Control: max-age` of both documents, seconds. */
export const DEFAULT_OIDC_MAX_AGE_SECONDS = 60;

/** Path prefix of per-peer discovery: `/peers/<trust domain>/…`. */
export const OIDC_PEERS_PREFIX = '/peers/';

/** A peer's JWT-SVIDs as the OIDC listener publishes them. */
export interface PeerOidc {
  /** The peer's JWT-SVID `iss` (its SPIRE's `jwt_issuer`): the issuer published for it. */
  readonly issuer: string;
  /** The peer's accepted bundle. */
  readonly bundle: TrustBundle;
}

/** The documents of the OIDC listener. */
export type OidcDocument = 'discovery' | 'jwks' | 'peer_discovery' | 'peer_jwks';
/** How a request was answered: 200, 304, 404 (unpublished peer), 503 (no local bundle yet). */
export type OidcRequestResult = 'served' | 'not_modified' | 'not_found' | 'not_ready';

/** Options of {@link buildOidcDiscoveryApp}. */
export interface OidcDiscoveryAppOptions {
  /** The local trust domain's bundle as the broker publishes it ({@link LocalBundle} implements it). */
  readonly local: PublishedBundleProvider;
  /**
   * The issuer published in the discovery document: exactly the `iss` of the JWT-SVIDs consumers
   * verify (SPIRE sets `iss` only when its `jwt_issuer` is configured, to that value).
   */
  readonly issuer: string;
  /** Absolute URL of the JWK Set. Default `<issuer>/keys`. */
  readonly jwksUri?: string;
  /** `Cache-Control: max-age` of both documents, seconds. Default 60. */
  readonly maxAgeSeconds?: number;
  /**
   * Per-peer discovery (allowlist `oidcIssuer`): the peer's issuer and accepted bundle, or
   * undefined for a trust domain that is not published. Served at
   * `/peers/<td>/.well-known/openid-configuration` (issuer: the peer's) and `/peers/<td>/keys`
   * under this listener's issuer, for relying parties configured with a discovery or JWKS URL of
   * their own (Vault's `jwks_url`, go-oidc's `InsecureIssuerURLContext`). Absent: no peer routes.
   */
  readonly peers?: (trustDomain: string) => PeerOidc | undefined;
  /** Hears how each request for a document was answered (metrics). */
  readonly onRequest?: (document: OidcDocument, result: OidcRequestResult) => void;
  /** Builds the node server (an `https.Server` for TLS); fastify's default http server otherwise. */
  readonly serverFactory?: (handler: (req: never, res: never) => void) => Server;
}

/** One rendered pair of documents for one published version of the local bundle. */
interface Rendered {
  readonly discovery: { readonly body: Buffer; readonly etag: string };
  readonly jwks: { readonly body: Buffer; readonly etag: string };
}

function tagged(text: string): { body: Buffer; etag: string } {
  const body = Buffer.from(text, 'utf8');
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` };
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** The body of every error answer: a stable code and a message. */
function errorBody(code: string, message: string): string {
  return JSON.stringify({ ok: false, code, message });
}

/**
 * Builds the fastify app of the OIDC discovery listener (never listens: see
 * {@link OidcDiscoveryServer}, or test it with `inject()`):
 *
 * - `GET /.well-known/openid-configuration` (and under the issuer's path, OpenID Connect Discovery
 *   1.0 §4): the provider metadata document naming the issuer and `jwks_uri`;
 * - `GET <path of jwks_uri>` (default `/keys`): the JWK Set of the local trust domain's JWT
 *   authorities (`use` = `sig`, nothing SPIFFE-specific).
 *
 * Both are rendered once per published version of the local bundle, so a JWT authority SPIRE adds
 * or removes is served as soon as the broker's poll of SPIRE sees it (250 ms by default). Strong
 * ETags and `If-None-Match` → 304; `Access-Control-Allow-Origin: *` (public documents). Before the
 * first bundle: 503 `ERR_ENDPOINT_OIDC_NOT_READY`; any other path: 404
 * `ERR_ENDPOINT_OIDC_NOT_FOUND`; other methods on a served path: 405.
 *
 * @example
 * const app = await buildOidcDiscoveryApp({ local, issuer: 'https://oidc.example.org' });
 * const res = await app.inject({ url: '/.well-known/openid-configuration' });
 */
export async function buildOidcDiscoveryApp(opts: OidcDiscoveryAppOptions): Promise<FastifyInstance> {
  const issuer = opts.issuer;
  const jwksUri = opts.jwksUri ?? defaultJwksUri(issuer);
  const maxAge = opts.maxAgeSeconds ?? DEFAULT_OIDC_MAX_AGE_SECONDS;
  if (!Number.isSafeInteger(maxAge) || maxAge < 0) {
    throw new TypeError(`maxAgeSeconds must be a non-negative integer, got ${maxAge}`);
  }
  const issuerPath = new URL(issuer).pathname.replace(/\/$/, '');
  const discoveryPaths = new Set([OIDC_DISCOVERY_PATH, `${issuerPath}${OIDC_DISCOVERY_PATH}`]);
  const jwksPath = new URL(jwksUri).pathname;
  if (discoveryPaths.has(jwksPath))
    throw new TypeError(`jwksUri ${jwksUri} collides with the discovery path`);
  const served = new Set([...discoveryPaths, jwksPath]);

  const peerRendered = new WeakMap<TrustBundle, { issuer: string; rendered: Rendered }>();
  const renderPeer = (td: string, p: PeerOidc): Rendered => {
    const hit = peerRendered.get(p.bundle);
    if (hit && hit.issuer === p.issuer) return hit.rendered;
    const peerJwks = `${issuer}${OIDC_PEERS_PREFIX}${td}${DEFAULT_JWKS_PATH}`;
    const rendered: Rendered = {
      discovery: tagged(renderOidcDiscovery(p.bundle, { issuer: p.issuer, jwksUri: peerJwks })),
      jwks: tagged(renderJwks(p.bundle)),
    };
    peerRendered.set(p.bundle, { issuer: p.issuer, rendered });
    return rendered;
  };

  let last: { doc: PublishedBundle; rendered: Rendered } | undefined;
  const render = (doc: PublishedBundle): Rendered => {
    if (last?.doc === doc) return last.rendered;
    const rendered: Rendered = {
      discovery: tagged(renderOidcDiscovery(doc.bundle, { issuer, jwksUri })),
      jwks: tagged(renderJwks(doc.bundle)),
    };
    last = { doc, rendered };
    return rendered;
  };

  const app = Fastify({
    logger: false,
    exposeHeadRoutes: true,
    return503OnClosing: true,
    forceCloseConnections: true,
    bodyLimit: 1024,
    requestIdHeader: false,
    ...(opts.serverFactory ? { serverFactory: opts.serverFactory as never } : {}),
  });
  // Request bodies are never read: nothing here accepts one.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));
  app.setNotFoundHandler((request, reply) => {
    const path = pathOf(request.url);
    const peerPath =
      opts.peers !== undefined &&
      path.includes(OIDC_PEERS_PREFIX) &&
      (path.endsWith(DEFAULT_JWKS_PATH) || path.endsWith(OIDC_DISCOVERY_PATH));
    if (served.has(path) || peerPath) {
      return reply
        .code(405)
        .header('allow', 'GET, HEAD')
        .type('application/json')
        .send(errorBody('ERR_ENDPOINT_OIDC_NOT_FOUND', `method ${request.method} not allowed on ${path}`));
    }
    return reply
      .code(404)
      .type('application/json')
      .send(errorBody('ERR_ENDPOINT_OIDC_NOT_FOUND', `no OIDC discovery document at ${path.slice(0, 200)}`));
  });

  const observe = (document: OidcDocument, result: OidcRequestResult): void => {
    try {
      opts.onRequest?.(document, result);
    } catch {
      // A metrics hook never fails a request.
    }
  };
  /** 200 with the document, or 304 when `If-None-Match` names its tag. */
  const send = (
    document: OidcDocument,
    request: FastifyRequest,
    reply: FastifyReply,
    { body, etag }: { body: Buffer; etag: string },
  ): FastifyReply => {
    reply.header('etag', etag).header('cache-control', `max-age=${maxAge}`);
    const inm = evaluateIfNoneMatch(request.headers['if-none-match'], etag);
    if (inm === 'match' || inm === 'any') {
      observe(document, 'not_modified');
      return reply.code(304).send();
    }
    observe(document, 'served');
    return reply.code(200).type('application/json').send(body);
  };
  const answer =
    (document: OidcDocument, pick: (r: Rendered) => { body: Buffer; etag: string }) =>
    (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
      const doc = opts.local.current();
      reply.header('access-control-allow-origin', '*');
      if (!doc) {
        observe(document, 'not_ready');
        return reply
          .code(503)
          .header('retry-after', '1')
          .header('cache-control', 'no-store')
          .type('application/json')
          .send(
            errorBody('ERR_ENDPOINT_OIDC_NOT_READY', 'the local trust domain bundle is not available yet'),
          );
      }
      return send(document, request, reply, pick(render(doc)));
    };
  for (const p of discoveryPaths)
    app.get(
      p,
      answer('discovery', (r) => r.discovery),
    );
  app.get(
    jwksPath,
    answer('jwks', (r) => r.jwks),
  );
  const peers = opts.peers;
  if (peers) {
    const answerPeer =
      (document: OidcDocument, pick: (r: Rendered) => { body: Buffer; etag: string }) =>
      (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
        const td = (request.params as { trustDomain: string }).trustDomain;
        const p = peers(td);
        reply.header('access-control-allow-origin', '*');
        // SPIFFE Federation §4.2: a bundle is published only under its own trust domain.
        if (!p || p.bundle.trustDomain.name !== td) {
          observe(document, 'not_found');
          return reply
            .code(404)
            .header('cache-control', 'no-store')
            .type('application/json')
            .send(
              errorBody(
                'ERR_ENDPOINT_OIDC_NOT_FOUND',
                `no OIDC discovery for trust domain ${JSON.stringify(td.slice(0, 255))}`,
              ),
            );
        }
        return send(document, request, reply, pick(renderPeer(td, p)));
      };
    // At the root and under the issuer's path, as the local documents (a proxy may strip it or not).
    for (const prefix of new Set(['', issuerPath])) {
      const base = `${prefix}${OIDC_PEERS_PREFIX}:trustDomain`;
      app.get(
        `${base}${OIDC_DISCOVERY_PATH}`,
        answerPeer('peer_discovery', (r) => r.discovery),
      );
      app.get(
        `${base}${DEFAULT_JWKS_PATH}`,
        answerPeer('peer_jwks', (r) => r.jwks),
      );
    }
  }
  await app.ready();
  return app;
}
