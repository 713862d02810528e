import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { ApiError, type ApiErrorCode, BrokerError } from '../../errors.js';

/** The body of every error answer of the admin and verify APIs. */
export interface ErrorBody {
  readonly ok: false;
  readonly code: string;
  readonly message: string;
}

/** JSON schema of {@link ErrorBody}: the response field allowlist. */
export const ERROR_BODY_SCHEMA = {
  type: 'object',
  required: ['ok', 'code', 'message'],
  properties: { ok: { const: false }, code: { type: 'string' }, message: { type: 'string' } },
  additionalProperties: false,
} as const;

const STATUS: Partial<Record<ApiErrorCode, number>> = {
  ERR_API_BAD_REQUEST: 400,
  ERR_API_UNAUTHORIZED: 401,
  ERR_API_CROSS_SITE: 403,
  ERR_API_HOST: 421,
  ERR_API_NOT_FOUND: 404,
  ERR_API_BODY_TOO_LARGE: 413,
  ERR_API_MEDIA_TYPE: 415,
  ERR_API_NOT_IMPLEMENTED: 501,
  ERR_API_INTERNAL: 500,
};

/** Sends a coded error answer; the HTTP status follows from the code. */
export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  const status = STATUS[error.code] ?? 500;
  const body: ErrorBody = { ok: false, code: error.code, message: error.message };
  return reply.code(status).header('cache-control', 'no-store').send(body);
}

/** Maps whatever a route or fastify itself threw to a coded {@link ApiError}. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof BrokerError) return new ApiError('ERR_API_BAD_REQUEST', `${err.message} (${err.code})`);
  const e = err as Partial<FastifyError>;
  switch (e?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('ERR_API_BODY_TOO_LARGE', e.message ?? 'request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('ERR_API_MEDIA_TYPE', e.message ?? 'unsupported media type');
    default:
      if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
        return new ApiError('ERR_API_BAD_REQUEST', e.message ?? 'bad request');
      }
      return new ApiError('ERR_API_INTERNAL', err instanceof Error ? err.message : String(err));
  }
}

/**
 * Makes every error answer of `app` a coded JSON {@link ErrorBody}: fastify's own (body too large,
 * bad JSON, unsupported media type), unknown routes (`ERR_API_NOT_FOUND`) and route failures.
 */
export function installCodedErrors(app: FastifyInstance): void {
  app.setErrorHandler((err, _request, reply) => sendError(reply, toApiError(err)));
  app.setNotFoundHandler((request, reply) =>
    sendError(
      reply,
      new ApiError('ERR_API_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
    ),
  );
}

/** Where an app listens: TCP host and port, or a Unix socket path. */
export type ListenTarget = { readonly host: string; readonly port: number } | { readonly path: string };

/** What {@link runApp} takes. */
export interface RunAppOptions {
  /** Where to listen. */
  readonly listen: ListenTarget;
  /** Stops the listener: in-flight requests finish, then the app closes. */
  readonly signal: AbortSignal;
  /** Hears the bound address (`http://host:port` or the socket path) — with port 0, the real port. */
  readonly onListening?: (address: string) => void;
}

/** Listens with `app` until `opts.signal` aborts, then closes it. */
export async function runApp(app: FastifyInstance, opts: RunAppOptions): Promise<void> {
  const { listen, signal } = opts;
  if (signal.aborted) return;
  const address = await app.listen(
    'path' in listen ? { path: listen.path } : { host: listen.host, port: listen.port },
  );
  opts.onListening?.(address);
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await app.close();
}
