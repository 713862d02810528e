import type { TLSSocket, Server as TlsServer } from 'node:tls';
import Fastify, { type FastifyInstance } from 'fastify';
import { marshalBundleMap } from '../../core/bundle/bundle-map.js';
import { marshalBundle } from '../../core/bundle/codec.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { matchOneOf } from '../../core/spiffeid/matcher.js';
import type { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { ApiError } from '../../errors.js';
import { type SpiffeTls, tlsOptions } from '../tls/spiffe-tls.js';
import type { SvidSource, X509SvidMaterial } from '../tls/svid.js';
import { installRequestGuards, type RequestGuardOptions } from './guard.js';
import {
  ERROR_BODY_SCHEMA,
  installCodedErrors,
  type ListenTarget,
  type RunAppOptions,
  runApp,
  sendError,
} from './http.js';
import {
  BROKER_STATUS_SCHEMA,
  type BrokerStatus,
  RECONCILE_DIFF_SCHEMA,
  type ReconcileDiff,
} from './status.js';

/** Where the admin API listens unless configured otherwise: loopback only. */
export const DEFAULT_ADMIN_LISTEN = { host: '127.0.0.1', port: 8089 } as const;

/** The readiness verdict: ready, or the reasons it is not. */
export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

/** mTLS for an admin listener bound beyond loopback. */
export interface AdminMtlsOptions {
  /** The local trust domain: admin clients are verified against its bundle only. */
  readonly trustDomain: TrustDomain;
  /** The local trust domain's current bundle (read at each handshake). */
  readonly localBundle: () => TrustBundle | undefined;
  /** The only SPIFFE IDs allowed to call the admin API. */
  readonly adminIds: readonly SpiffeId[];
  /** The broker's own X509-SVID, presented as the server certificate (rotates live). */
  readonly svid: SvidSource | X509SvidMaterial;
  /** Verification time, ms. Default `Date.now`. */
  readonly now?: () => number;
}

/** Options of {@link buildAdminApp}: providers the daemon implements. */
export interface AdminAppOptions {
  readonly status: () => BrokerStatus | Promise<BrokerStatus>;
  /**
   * Ready when the allowlist is loaded and every peer with a last-known-good bundle has been pushed
   * to SPIRE; otherwise the reasons.
   */
  readonly ready: () => Readiness | Promise<Readiness>;
  /** Prometheus exposition (BrokerMetrics implements it). */
  readonly metrics: { expose(): Promise<{ contentType: string; body: string }> };
  /** Every bundle the broker holds — the local one and the federated ones. */
  readonly bundles: () => Iterable<TrustBundle>;
  /** What a reconcile would change; `/v1/diff` answers 501 without it. */
  readonly diff?: () => Promise<ReconcileDiff>;
  /**
   * An operator's explicit reset of a peer's `spiffe_sequence` baseline, so its next bundle is
   * accepted even with a lower sequence; `POST /v1/peers/{trustDomain}/reset-sequence`.
   */
  readonly resetSequence?: (trustDomain: TrustDomain) => Promise<{ previousSequence: string | null }>;
  /** Runs a reconcile of every SPIRE server now and resolves when it is done; `/v1/reconcile` answers 501 without it. */
  readonly reconcile?: () => Promise<void>;
  /** Serve HTTPS and admit only these admin SPIFFE IDs (required off loopback, see {@link runAdmin}). */
  readonly mtls?: AdminMtlsOptions;
  /** Called when an mTLS client is refused (audit, logs). */
  readonly onRefused?: (error: Error) => void;
  /**
   * The bearer token of mutating routes (`POST /v1/reconcile`, `POST /v1/peers/{td}/reset-sequence`):
   * they answer 401 `ERR_API_UNAUTHORIZED` without `Authorization: Bearer <adminToken>`, and every
   * mutating route is refused when it is absent. The daemon makes it with {@link ensureAdminToken}.
   */
  readonly adminToken?: string;
  /**
   * `Host` values the API answers; default: the loopback names with the bound port on a loopback
   * listener, no check on a Unix socket or an mTLS listener (see {@link RequestGuardOptions}).
   */
  readonly allowedHosts?: RequestGuardOptions['allowedHosts'];
}

const NO_STORE = 'no-store';

function byName(a: TrustBundle, b: TrustBundle): number {
  return a.trustDomain.name < b.trustDomain.name ? -1 : a.trustDomain.name > b.trustDomain.name ? 1 : 0;
}

/** Admin mTLS: verification against the local trust domain's bundle only, admin IDs only. */
function adminTls(m: AdminMtlsOptions): SpiffeTls {
  if (m.adminIds.length === 0)
    throw new TypeError('buildAdminApp: mtls.adminIds must name at least one SPIFFE ID');
  const td = m.trustDomain;
  return tlsOptions({
    source: { getBundleForTrustDomain: (t) => (t.equals(td) ? m.localBundle() : undefined) },
    authorize: matchOneOf(...m.adminIds),
    svid: m.svid,
    ...(m.now ? { now: m.now } : {}),
  });
}

/**
 * The admin API as a fastify app that never listens by itself (tests use `inject()`):
 *
 * | route | answer |
 * | --- | --- |
 * | `GET /healthz` | 200 `{"status":"ok"}` while the process serves |
 * | `GET /readyz` | 200 `{"ready":true,"reasons":[]}`, or 503 with the reasons |
 * | `GET /metrics` | Prometheus text exposition |
 * | `GET /v1/status` | {@link BrokerStatus} |
 * | `GET /v1/bundles` | a SPIFFE Bundle Map of every bundle held (local and federated) |
 * | `GET /v1/bundles/{trustDomain}` | that SPIFFE bundle, or 404 `ERR_API_NOT_FOUND` |
 * | `GET /v1/diff` | {@link ReconcileDiff}: what a reconcile would change, changing nothing |
 * | `POST /v1/reconcile` | reconciles now; 200 `{"ok":true}` |
 *
 * Every request's `Host` must name the listener (421 `ERR_API_HOST`: DNS rebinding); a mutating
 * request (`POST`) must carry `Authorization: Bearer <adminToken>` (401 `ERR_API_UNAUTHORIZED`)
 * and no browser `Origin` or cross-site `Sec-Fetch-Site` (403 `ERR_API_CROSS_SITE`).
 *
 * Errors are `{"ok":false,"code","message"}`. With `mtls`, the app serves HTTPS, and a client
 * whose X509-SVID does not verify against the local trust domain's bundle or is not one of the
 * admin IDs is dropped at the handshake; a request that did not arrive over a verified connection
 * (e.g. `inject()`) is answered 403.
 */
/** `/healthz`, `/readyz` and `/metrics`: shared by the admin app and the health listener. */
function registerHealthRoutes(app: FastifyInstance, opts: Pick<AdminAppOptions, 'ready' | 'metrics'>): void {
  app.get('/healthz', async (_req, reply) => reply.header('cache-control', NO_STORE).send({ status: 'ok' }));

  app.get(
    '/readyz',
    {
      schema: {
        response: {
          '2xx': {
            type: 'object',
            required: ['ready', 'reasons'],
            additionalProperties: false,
            properties: { ready: { type: 'boolean' }, reasons: { type: 'array', items: { type: 'string' } } },
          },
          '5xx': {
            anyOf: [
              {
                type: 'object',
                required: ['ready', 'reasons'],
                additionalProperties: false,
                properties: {
                  ready: { type: 'boolean' },
                  reasons: { type: 'array', items: { type: 'string' } },
                },
              },
              ERROR_BODY_SCHEMA,
            ],
          },
        },
      },
    },
    async (_req, reply) => {
      const r = await opts.ready();
      return reply
        .code(r.ready ? 200 : 503)
        .header('cache-control', NO_STORE)
        .send({ ready: r.ready, reasons: [...r.reasons] });
    },
  );

  app.get('/metrics', async (_req, reply) => {
    const { contentType, body } = await opts.metrics.expose();
    return reply.header('content-type', contentType).header('cache-control', NO_STORE).send(body);
  });
}

/**
 * The health listener (`probe.listen`): only `/healthz`, `/readyz` and `/metrics`, over plain HTTP,
 * for kubelet probes and Prometheus when the admin API itself is mTLS-only. It exposes no bundle,
 * status or control route.
 */
export function buildHealthApp(
  opts: Pick<AdminAppOptions, 'ready' | 'metrics' | 'allowedHosts'>,
): FastifyInstance {
  if (typeof opts?.ready !== 'function') throw new TypeError('buildHealthApp: ready must be a function');
  if (typeof opts.metrics?.expose !== 'function')
    throw new TypeError('buildHealthApp: metrics.expose is required');
  const app = Fastify({ logger: false, bodyLimit: 1024 }) as FastifyInstance;
  installCodedErrors(app);
  installRequestGuards(app, opts.allowedHosts ? { allowedHosts: opts.allowedHosts } : {});
  registerHealthRoutes(app, opts);
  return app;
}

export function buildAdminApp(opts: AdminAppOptions): FastifyInstance {
  for (const k of ['status', 'ready', 'bundles'] as const) {
    if (typeof opts?.[k] !== 'function') throw new TypeError(`buildAdminApp: ${k} must be a function`);
  }
  if (typeof opts.metrics?.expose !== 'function')
    throw new TypeError('buildAdminApp: metrics.expose is required');
  const mtls = opts.mtls ? adminTls(opts.mtls) : undefined;
  // The HTTPS instance is typed by its server; routes are identical, so both are used as one type.
  const app = (
    mtls
      ? Fastify({ logger: false, bodyLimit: 4096, https: mtls.serverOptions() })
      : Fastify({ logger: false, bodyLimit: 4096 })
  ) as FastifyInstance;
  app.decorate('adminMtls', mtls !== undefined);
  installCodedErrors(app);
  if (opts.adminToken !== undefined && (typeof opts.adminToken !== 'string' || opts.adminToken.length < 32)) {
    throw new TypeError('buildAdminApp: adminToken must be a string of at least 32 characters');
  }
  // Cross-site requests, DNS rebinding and other local users (issue 16 item 3): see installRequestGuards.
  installRequestGuards(app, {
    ...(opts.allowedHosts ? { allowedHosts: opts.allowedHosts } : {}),
    mutatingToken: opts.adminToken ?? null,
    refuseCrossSite: true,
  });

  if (mtls) {
    mtls.secure(app.server as unknown as TlsServer, (err) => opts.onRefused?.(err));
    app.addHook('onRequest', async (request, reply) => {
      if (!mtls.peerId(request.raw.socket as TLSSocket)) {
        reply.code(403).header('cache-control', NO_STORE).send({
          ok: false,
          code: 'ERR_VERIFY_ID_NOT_AUTHORIZED',
          message: 'the admin API requires a verified admin X509-SVID (mTLS)',
        });
        return reply;
      }
    });
  }

  registerHealthRoutes(app, opts);

  app.get('/v1/status', { schema: { response: { 200: BROKER_STATUS_SCHEMA } } }, async (_req, reply) =>
    reply.header('cache-control', NO_STORE).send(await opts.status()),
  );

  app.get('/v1/bundles', async (_req, reply) =>
    reply
      .header('content-type', 'application/json')
      .header('cache-control', NO_STORE)
      .send(marshalBundleMap([...opts.bundles()].sort(byName))),
  );

  app.get<{ Params: { trustDomain: string } }>('/v1/bundles/:trustDomain', async (request, reply) => {
    let td: TrustDomain;
    try {
      td = TrustDomain.parseNameOrId(request.params.trustDomain);
    } catch (err) {
      throw new ApiError(
        'ERR_API_BAD_REQUEST',
        `${JSON.stringify(request.params.trustDomain)} is not a trust domain name: ${(err as Error).message}`,
      );
    }
    const bundle = [...opts.bundles()].find((b) => b.trustDomain.equals(td));
    if (!bundle) {
      return sendError(
        reply,
        new ApiError('ERR_API_NOT_FOUND', `the broker holds no bundle for trust domain "${td.name}"`),
      );
    }
    return reply
      .header('content-type', 'application/json')
      .header('cache-control', NO_STORE)
      .send(marshalBundle(bundle));
  });

  app.get('/v1/diff', { schema: { response: { 200: RECONCILE_DIFF_SCHEMA } } }, async (_req, reply) => {
    if (!opts.diff)
      throw new ApiError('ERR_API_NOT_IMPLEMENTED', 'this broker was started without a diff provider');
    return reply.header('cache-control', NO_STORE).send(await opts.diff());
  });

  app.post<{ Params: { trustDomain: string } }>(
    '/v1/peers/:trustDomain/reset-sequence',
    async (request, reply) => {
      if (!opts.resetSequence) {
        throw new ApiError('ERR_API_NOT_IMPLEMENTED', 'this broker was started without sequence resets');
      }
      let td: TrustDomain;
      try {
        td = TrustDomain.parse(request.params.trustDomain);
      } catch (err) {
        throw new ApiError('ERR_API_BAD_REQUEST', `not a trust domain: ${(err as Error).message}`);
      }
      let r: { previousSequence: string | null };
      try {
        r = await opts.resetSequence(td);
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_POLICY_NOT_ALLOWLISTED') {
          throw new ApiError('ERR_API_NOT_FOUND', (err as Error).message);
        }
        throw err;
      }
      return reply.header('cache-control', NO_STORE).send({ ok: true, trustDomain: td.name, ...r });
    },
  );

  app.post('/v1/reconcile', async (_req, reply) => {
    if (!opts.reconcile) {
      throw new ApiError('ERR_API_NOT_IMPLEMENTED', 'this broker was started without a reconcile trigger');
    }
    await opts.reconcile();
    return reply.header('cache-control', NO_STORE).send({ ok: true });
  });

  return app;
}

/** True for loopback hosts: 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return (
    h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1'
  );
}

/**
 * Serves an admin app until `opts.signal` aborts, by default on {@link DEFAULT_ADMIN_LISTEN}. A
 * TCP listener beyond loopback requires an app built with `mtls` (a `TypeError` otherwise: the
 * config layer refuses such configs first); a Unix socket is protected by its file permissions.
 */
export async function runAdmin(
  app: FastifyInstance,
  opts: Omit<RunAppOptions, 'listen'> & { readonly listen?: ListenTarget },
): Promise<void> {
  const listen = opts.listen ?? DEFAULT_ADMIN_LISTEN;
  const secured = (app as FastifyInstance & { adminMtls?: boolean }).adminMtls === true;
  if ('host' in listen && !isLoopbackHost(listen.host) && !secured) {
    throw new TypeError(
      `runAdmin: refusing to serve the admin API on non-loopback ${listen.host} without mTLS and admin IDs`,
    );
  }
  await runApp(app, { ...opts, listen });
}
