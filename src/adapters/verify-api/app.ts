import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { BundleSource } from '../../core/bundle/source.js';
import { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { verifyJwtSvid } from '../../core/verify/jwt-svid.js';
import type { VerifyFailure } from '../../core/verify/result.js';
import { X509VerifyCache } from '../../core/verify/x509-cache.js';
import { verifyX509Svid } from '../../core/verify/x509-svid.js';
import { ApiError } from '../../errors.js';
import { installRequestGuards, type RequestGuardOptions } from '../admin/guard.js';
import { ERROR_BODY_SCHEMA, installCodedErrors } from '../admin/http.js';
import type { SvidKind } from '../metrics/broker-metrics.js';
import { pemToDerList } from '../pki/pem.js';
import { claimedSpiffeId } from '../tls/spiffe-tls.js';

/** Default {@link VerifyApiOptions.bodyLimit}: 64 KiB, room for a long chain or token. */
export const DEFAULT_VERIFY_BODY_LIMIT = 64 * 1024;

/** Most audiences one JWT verification request may name. */
export const MAX_AUDIENCES = 32;

/** The metrics the verify API reports (BrokerMetrics implements it). */
export interface VerifyApiMetrics {
  observeVerify(o: {
    readonly trustDomain: string;
    readonly kind: SvidKind;
    readonly result: 'ok' | 'refused';
    readonly reason?: string;
    readonly durationSeconds: number;
  }): void;
}

/** Options of {@link buildVerifyApiApp}. */
export interface VerifyApiOptions {
  /**
   * The live bundles SVIDs are verified against: the broker's federated bundles plus the local one
   * (each SVID only against its own trust domain's bundle).
   */
  readonly source: BundleSource;
  /** Verification time, ms since the epoch. Default `Date.now`. */
  readonly now?: () => number;
  /** Monotonic ms for the duration metric. Default `performance.now`. */
  readonly timer?: () => number;
  readonly metrics?: VerifyApiMetrics;
  /** Verified-chain cache shared by every request; a fresh one by default. */
  readonly cache?: X509VerifyCache;
  /** Largest request body, bytes; larger ones get 413 `ERR_API_BODY_TOO_LARGE`. Default 64 KiB. */
  readonly bodyLimit?: number;
  /** Clock-skew allowance for JWT `exp`/`nbf`, seconds. Default 0. */
  readonly jwtLeewaySeconds?: number;
  /**
   * `Host` values answered (421 `ERR_API_HOST` otherwise). Default: on a loopback listener the
   * loopback names with the bound port; no check on other binds (see {@link RequestGuardOptions}).
   */
  readonly allowedHosts?: RequestGuardOptions['allowedHosts'];
}

/** The answer to a verification request that verified (HTTP 200). */
export interface VerifyApiAccepted {
  readonly ok: true;
  /** The SVID's SPIFFE ID. */
  readonly id: string;
  readonly trustDomain: string;
  /** When the SVID (or, for X.509, anything on its verified path) expires, RFC 3339. */
  readonly expiresAt: string;
}

/** The answer to a verification request that was refused (HTTP 403): the core's code and reason. */
export type VerifyApiRefused = VerifyFailure;

const ACCEPTED_SCHEMA = {
  type: 'object',
  required: ['ok', 'id', 'trustDomain', 'expiresAt'],
  properties: {
    ok: { const: true },
    id: { type: 'string' },
    trustDomain: { type: 'string' },
    expiresAt: { type: 'string' },
  },
  additionalProperties: false,
} as const;

const RESPONSES = {
  200: ACCEPTED_SCHEMA,
  '4xx': ERROR_BODY_SCHEMA,
  '5xx': ERROR_BODY_SCHEMA,
} as const;

function badRequest(message: string): ApiError {
  return new ApiError('ERR_API_BAD_REQUEST', message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The SPIFFE ID a refused JWT-SVID claims (its unverified `sub`), for the metrics label. */
function claimedByToken(token: string): SpiffeId | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined || payload.length > 16_384) return undefined;
  try {
    const sub = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
    return typeof sub === 'string' ? SpiffeId.tryParse(sub) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The sidecar-less verification API: a fastify app (never listening by itself) that verifies
 * X509-SVIDs and JWT-SVIDs for callers that cannot link the verifier, against the broker's live
 * bundles.
 *
 * - `POST /v1/verify/x509` — JSON `{"chain": "<PEM>"}` or an `application/x-pem-file` body: the
 *   leaf first, then intermediates.
 * - `POST /v1/verify/jwt` — JSON `{"token": "<JWT>", "audience": "<aud>" | ["<aud>", …]}`.
 *
 * Answers: 200 `{"ok":true,"id","trustDomain","expiresAt"}` when the SVID verified; 403
 * `{"ok":false,"code":"ERR_VERIFY_…","message"}` when it was refused — a definite answer, shaped
 * like the core's result, and a status that proxies' external-authorization hooks (nginx
 * `auth_request`, Envoy `ext_authz`) read as "deny"; 400/413/415 `{"ok":false,"code":"ERR_API_…"}`
 * when the request itself is malformed, too large or of another media type (no verification was
 * made). See docs/verification.md.
 *
 * @example
 * const app = buildVerifyApiApp({ source: bundles, metrics });
 * const res = await app.inject({ method: 'POST', url: '/v1/verify/jwt', payload: { token, audience: 'spiffe://a.test/api' } });
 */
export function buildVerifyApiApp(opts: VerifyApiOptions): FastifyInstance {
  if (typeof opts?.source?.getBundleForTrustDomain !== 'function') {
    throw new TypeError('buildVerifyApiApp: source must implement getBundleForTrustDomain');
  }
  const bodyLimit = opts.bodyLimit ?? DEFAULT_VERIFY_BODY_LIMIT;
  if (!Number.isSafeInteger(bodyLimit) || bodyLimit < 1024) {
    throw new TypeError(`buildVerifyApiApp: bodyLimit must be an integer >= 1024, got ${bodyLimit}`);
  }
  const { source, metrics } = opts;
  const now = opts.now ?? Date.now;
  const timer = opts.timer ?? (() => performance.now());
  const cache = opts.cache ?? new X509VerifyCache();
  const leewaySeconds = opts.jwtLeewaySeconds ?? 0;

  const app = Fastify({ logger: false, bodyLimit });
  installCodedErrors(app);
  // DNS rebinding: on loopback, only requests naming the listener (issue 16 item 3).
  installRequestGuards(app, opts.allowedHosts ? { allowedHosts: opts.allowedHosts } : {});
  app.addContentTypeParser('application/x-pem-file', { parseAs: 'string' }, (_req, body, done) =>
    done(null, body),
  );

  /** The label of a trust domain: only trust domains with a held bundle, to bound cardinality. */
  const label = (td: TrustDomain | undefined): string =>
    td && source.getBundleForTrustDomain(td) ? td.name : 'unknown';

  function answer(
    reply: FastifyReply,
    kind: SvidKind,
    started: number,
    result: { ok: true; id: SpiffeId; trustDomain: TrustDomain; expiresAt: number } | VerifyFailure,
    claimed: () => SpiffeId | undefined,
  ): FastifyReply {
    const durationSeconds = (timer() - started) / 1000;
    if (result.ok) {
      metrics?.observeVerify({ trustDomain: result.trustDomain.name, kind, result: 'ok', durationSeconds });
      const body: VerifyApiAccepted = {
        ok: true,
        id: result.id.toString(),
        trustDomain: result.trustDomain.name,
        expiresAt: new Date(result.expiresAt).toISOString(),
      };
      return reply.code(200).header('cache-control', 'no-store').send(body);
    }
    metrics?.observeVerify({
      trustDomain: label(claimed()?.trustDomain),
      kind,
      result: 'refused',
      reason: result.code,
      durationSeconds,
    });
    const body: VerifyApiRefused = { ok: false, code: result.code, message: result.message };
    return reply.code(403).header('cache-control', 'no-store').send(body);
  }

  app.post('/v1/verify/x509', { schema: { response: RESPONSES } }, async (request, reply) => {
    let pem: unknown = request.body;
    if (isObject(pem)) pem = pem.chain;
    else if (typeof pem !== 'string' || request.headers['content-type']?.includes('json')) {
      throw badRequest('expected a JSON object {"chain": "<PEM>"} or an application/x-pem-file body');
    }
    if (typeof pem !== 'string') throw badRequest('"chain" must be a string of PEM certificates, leaf first');
    let chain: Uint8Array[];
    try {
      chain = pemToDerList(pem, 'CERTIFICATE');
    } catch (err) {
      throw badRequest(`chain: ${(err as Error).message}`);
    }
    if (chain.length === 0) throw badRequest('chain: no PEM CERTIFICATE block found');
    const started = timer();
    const result = verifyX509Svid(chain, source, { now: now(), cache });
    return answer(reply, 'x509', started, result, () => claimedSpiffeId(chain));
  });

  app.post('/v1/verify/jwt', { schema: { response: RESPONSES } }, async (request, reply) => {
    const body = request.body;
    if (!isObject(body)) throw badRequest('expected a JSON object {"token": "<JWT>", "audience": "<aud>"}');
    const { token, audience } = body;
    if (typeof token !== 'string' || token.length === 0)
      throw badRequest('"token" must be a non-empty string');
    const audiences = typeof audience === 'string' ? [audience] : audience;
    if (
      !Array.isArray(audiences) ||
      audiences.length === 0 ||
      audiences.length > MAX_AUDIENCES ||
      !audiences.every((a): a is string => typeof a === 'string' && a.length > 0)
    ) {
      throw badRequest(`"audience" must be a non-empty string or an array of 1..${MAX_AUDIENCES} of them`);
    }
    const started = timer();
    const result = verifyJwtSvid(token, source, { audience: audiences, now: now(), leewaySeconds });
    return answer(reply, 'jwt', started, result, () => claimedByToken(token));
  });

  return app;
}
