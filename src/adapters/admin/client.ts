import { request as httpRequest } from 'node:http';
import { ApiError } from '../../errors.js';

/** Where the admin API is: an `http://host:port` base URL, or a Unix socket. */
export type AdminTarget = { readonly url: URL } | { readonly socketPath: string };

/** One GET: the response status and body text. */
export interface HttpGetResponse {
  readonly status: number;
  readonly body: string;
}

/**
 * A GET against the admin API, injected into the CLI commands so they are testable without
 * sockets. `path` includes the query.
 */
export type HttpGet = (
  target: AdminTarget,
  path: string,
  opts: {
    readonly signal?: AbortSignal;
    readonly method?: 'GET' | 'POST';
    /** The admin token, sent as `Authorization: Bearer <token>` (mutating routes need it). */
    readonly token?: string;
  },
) => Promise<HttpGetResponse>;

/** Largest admin answer read, bytes. */
const MAX_BODY = 16 * 1024 * 1024;
/** Deadline of one admin call, ms. */
const TIMEOUT_MS = 15_000;

/** The default {@link HttpGet}: node:http over TCP or a Unix socket, with a deadline and a body cap. */
export const nodeHttpGet: HttpGet = (target, path, opts) =>
  new Promise<HttpGetResponse>((resolve, reject) => {
    const where =
      'socketPath' in target
        ? { socketPath: target.socketPath }
        : {
            host: target.url.hostname.replace(/^\[|\]$/g, ''),
            port: Number(target.url.port || 80),
          };
    const base = 'url' in target ? target.url.pathname.replace(/\/$/, '') : '';
    const req = httpRequest(
      {
        ...where,
        method: opts.method ?? 'GET',
        path: base + path,
        headers: {
          accept: 'application/json',
          ...(opts.token !== undefined ? { authorization: `Bearer ${opts.token}` } : {}),
        },
        timeout: TIMEOUT_MS,
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY) req.destroy(new Error(`answer larger than ${MAX_BODY} bytes`));
          else chunks.push(c);
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });

/** Describes a target for messages. */
export function describeTarget(target: AdminTarget): string {
  return 'socketPath' in target ? `unix:${target.socketPath}` : target.url.toString().replace(/\/$/, '');
}

/**
 * GETs `path` from the admin API and parses the JSON answer.
 * @throws ApiError `ERR_API_CONNECT` when unreachable; `ERR_API_RESPONSE` for another status than
 *   200 (carrying the API's own coded message when it sent one) or a body that is not JSON.
 */
export async function adminGetJson<T>(
  get: HttpGet,
  target: AdminTarget,
  path: string,
  signal?: AbortSignal,
): Promise<T> {
  return adminRequestJson<T>(get, target, path, 'GET', signal);
}

/**
 * POSTs to an admin route (no body) with the admin token and returns its parsed JSON answer; same
 * errors as {@link adminGetJson} (a missing or wrong token is `ERR_API_RESPONSE` carrying the
 * API's `ERR_API_UNAUTHORIZED`).
 */
export function adminPostJson<T>(
  get: HttpGet,
  target: AdminTarget,
  path: string,
  opts: { readonly signal?: AbortSignal; readonly token?: string } = {},
): Promise<T> {
  return adminRequestJson<T>(get, target, path, 'POST', opts.signal, opts.token);
}

async function adminRequestJson<T>(
  get: HttpGet,
  target: AdminTarget,
  path: string,
  method: 'GET' | 'POST',
  signal?: AbortSignal,
  token?: string,
): Promise<T> {
  const where = `${describeTarget(target)}${path}`;
  let res: HttpGetResponse;
  try {
    res = await get(target, path, {
      method,
      ...(signal ? { signal } : {}),
      ...(token !== undefined ? { token } : {}),
    });
  } catch (cause) {
    throw new ApiError(
      'ERR_API_CONNECT',
      `cannot reach the admin API at ${where}: ${(cause as Error).message}`,
      { cause },
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    throw new ApiError(
      'ERR_API_RESPONSE',
      `${where} answered HTTP ${res.status} with a body that is not JSON`,
    );
  }
  if (res.status !== 200) {
    const e = body as { code?: unknown; message?: unknown };
    const detail = typeof e?.code === 'string' ? `: ${String(e.message)} (${e.code})` : '';
    throw new ApiError('ERR_API_RESPONSE', `${where} answered HTTP ${res.status}${detail}`);
  }
  return body as T;
}
