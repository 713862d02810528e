import type { Server, ServerResponse } from 'node:http';
import Fastify, {
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { marshalBundleMap } from '../../core/bundle/bundle-map.js';
import { marshalBundle } from '../../core/bundle/codec.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { evaluateIfNoneMatch, preferredWaitSeconds } from './conditional.js';
import { defaultEndpointDeps, type EndpointDeps } from './deps.js';
import { type HeldRequest, HeldRequests, type ReleaseCallback, type ReleaseReason } from './held-requests.js';
import { entityTag, type PublishedBundle } from './local-bundle.js';

/** Default cap on concurrently held change-notification requests. */
export const DEFAULT_MAX_HELD_REQUESTS = 10_000;
/** Largest `Prefer: wait` honoured, seconds; longer waits are clamped to it. */
export const MAX_WAIT_SECONDS = 60;
/** `Retry-After` sent with 503 when the held-request cap is reached, seconds. */
export const DEFAULT_RETRY_AFTER_SECONDS = 5;

/** What the endpoint reads the local document from: {@link LocalBundle} implements it. */
export interface PublishedBundleProvider {
  current(): PublishedBundle | undefined;
  subscribe(listener: (doc: PublishedBundle) => void): () => void;
  /**
   * A client waits for the next version (a held long-poll); the returned function is called when
   * it stops waiting. {@link LocalBundle} polls its source faster meanwhile.
   */
  watch?(): () => void;
}

/** Bundles the broker holds for other trust domains (BundleSet implements it). */
export interface FederatedBundlesProvider {
  bundles(): readonly TrustBundle[];
}

/**
 * Accepted bundles of the peers the endpoint relays (allowlist `relay: true`): the daemon backs it
 * with the federated bundle store and the live allowlist.
 */
export interface RelayedBundlesProvider {
  /** The accepted bundle of `trustDomain` when that peer is relayed; undefined otherwise. */
  bundle(trustDomain: string): TrustBundle | undefined;
  /** Calls `listener` with the trust domain whose accepted bundle changed or went away. */
  subscribe(listener: (trustDomain: string) => void): () => void;
}

/** How a relay request was answered: 200, 304, 404, or 503 past the held-request cap. */
export type RelayRequestResult = 'served' | 'not_modified' | 'not_found' | 'too_many';

/** Path prefix of relayed peer bundles: `GET /bundles/<trust domain>`. */
export const RELAY_PATH_PREFIX = '/bundles/';
/** `Cache-Control: max-age` of a relayed bundle that carries no refresh hint, seconds. */
const RELAY_DEFAULT_MAX_AGE_SECONDS = 300;

/** Options of {@link bundleEndpointPlugin} and {@link buildBundleEndpointApp}. */
export interface BundleEndpointOptions {
  readonly local: PublishedBundleProvider;
  /**
   * Serve a SPIFFE Bundle Map at this path (e.g. `/bundles`): the local bundle and, when
   * `federated` is given, the bundles the broker holds for other trust domains.
   */
  readonly bundleMap?: {
    readonly path: string;
    readonly federated?: FederatedBundlesProvider;
  };
  /**
   * Relay accepted peer bundles at `GET /bundles/<trust domain>` (SPIFFE bundle JSON exactly as
   * accepted, ETag, `If-None-Match` + `Prefer: wait` long-poll like `/`), for consumers such as
   * Istio that read one URL per trust domain. Trust domains it has no bundle for get 404
   * `ERR_ENDPOINT_RELAY_NOT_FOUND`. Absent: no relay routes.
   */
  readonly relay?: RelayedBundlesProvider;
  /** Hears how each relay request was answered (metrics). */
  readonly onRelayRequest?: (result: RelayRequestResult) => void;
  /** Cap on held requests; past it a waiting request gets 503. Default 10,000. */
  readonly maxHeldRequests?: number;
  /** Cap on `Prefer: wait`, seconds (≤ 60). Default 60. */
  readonly maxWaitSeconds?: number;
  /** `Retry-After` of the 503 past the cap, seconds. Default 5. */
  readonly retryAfterSeconds?: number;
  /** Granularity of hold deadlines, ms. Default 250. */
  readonly holdTickMs?: number;
  readonly deps?: Partial<EndpointDeps>;
}

/** Live state of a registered endpoint. */
export interface BundleEndpointController {
  /** Requests held for change notification right now. */
  heldRequests(): number;
  /** Releases every held request with 304 (shutdown). Runs automatically before the app closes. */
  releaseHeld(): void;
}

/** The fastify instance built by {@link buildBundleEndpointApp}, with its controller. */
export type BundleEndpointApp = FastifyInstance & { readonly bundleEndpoint: BundleEndpointController };

/** SPIRE's own bundle endpoint answers these bodies (spire-server-api.md §6). */
const BODY_405 = '405 method not allowed\n';
const BODY_404 = '404 page not found\n';
const BODY_NOT_READY = '503 local bundle not available yet\n';
const BODY_TOO_MANY = '503 too many requests waiting for a bundle change\n';
const TEXT = 'text/plain; charset=utf-8';

/** A relayed peer bundle as served: its SPIFFE bundle document exactly as accepted. */
interface RelayDocument {
  readonly body: Buffer;
  readonly etag: string;
  /** `Cache-Control: max-age`: the peer's refresh hint, or 300 s when it has none. */
  readonly maxAge: number;
}

/** Relay documents, serialized once per accepted bundle. */
const relayCache = new WeakMap<TrustBundle, RelayDocument>();

function relayDocument(bundle: TrustBundle): RelayDocument {
  let doc = relayCache.get(bundle);
  if (!doc) {
    const body = Buffer.from(marshalBundle(bundle), 'utf8');
    doc = Object.freeze({
      body,
      etag: entityTag(body),
      maxAge: bundle.refreshHint > 0 ? bundle.refreshHint : RELAY_DEFAULT_MAX_AGE_SECONDS,
    });
    relayCache.set(bundle, doc);
  }
  return doc;
}

type HeaderSet = Readonly<Record<string, string>>;

/** The 200 and the 304 answering a held request, with its `Preference-Applied`. */
interface HeldHeaders {
  readonly ok: HeaderSet;
  readonly notModified: HeaderSet;
}

/** Response headers of one published version: its 200 and 304, and per `Preference-Applied`. */
interface DocumentHeaders {
  readonly ok: HeaderSet;
  readonly notModified: HeaderSet;
  /** `wait=<s>` → the answers of a held request (at most 60 entries: one per wait). */
  readonly held: Map<string, HeldHeaders>;
}

/** Built once per published version, so answering 10,000 held requests builds no header object. */
const headerCache = new WeakMap<PublishedBundle, DocumentHeaders>();

function documentHeaders(doc: PublishedBundle): DocumentHeaders {
  let h = headerCache.get(doc);
  if (!h) {
    h = {
      // SPIFFE Federation §5.2.1.3 / §5.2.2.3: the bundle, UTF-8, as application/json.
      ok: Object.freeze({
        'content-type': 'application/json',
        'content-length': String(doc.body.length),
        etag: doc.etag,
        'cache-control': `max-age=${doc.refreshHint}`,
      }),
      // RFC 9110 §15.4.5: a 304 carries the ETag and Cache-Control a 200 would have.
      notModified: Object.freeze({ etag: doc.etag, 'cache-control': `max-age=${doc.refreshHint}` }),
      held: new Map(),
    };
    headerCache.set(doc, h);
  }
  return h;
}

function heldHeaders(doc: PublishedBundle, applied: string): HeldHeaders {
  const h = documentHeaders(doc);
  let forWait = h.held.get(applied);
  if (!forWait) {
    forWait = {
      ok: Object.freeze({ ...h.ok, 'preference-applied': applied }),
      notModified: Object.freeze({ ...h.notModified, 'preference-applied': applied }),
    };
    h.held.set(applied, forWait);
  }
  return forWait;
}

/**
 * The hot path: the pre-serialized body and a frozen header object written straight to the node
 * response (`hijack` skips fastify's reply pipeline — no hooks run on this app — which is what
 * keeps the endpoint within a few percent of a bare node:https server). Node drops the body of a
 * HEAD response by itself.
 */
function sendDocument(reply: FastifyReply, doc: PublishedBundle): FastifyReply {
  reply.hijack();
  reply.raw.writeHead(200, documentHeaders(doc).ok);
  reply.raw.end(doc.body);
  return reply;
}

function sendNotModified(reply: FastifyReply, doc: PublishedBundle): FastifyReply {
  reply.hijack();
  reply.raw.writeHead(304, documentHeaders(doc).notModified);
  reply.raw.end();
  return reply;
}

/**
 * Answers a held request on its raw response (it was hijacked when held): the new document, or
 * 304 when the wait ended or the endpoint closes. Nothing is written to a connection already gone.
 */
function answerHeld(res: ServerResponse, doc: PublishedBundle, applied: string, changed: boolean): void {
  if (res.destroyed || res.writableEnded) return;
  const h = heldHeaders(doc, applied);
  if (changed) {
    res.writeHead(200, h.ok);
    res.end(doc.body);
  } else {
    res.writeHead(304, h.notModified);
    res.end();
  }
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/**
 * The SPIFFE bundle endpoint as a fastify plugin (registered without encapsulation: it owns the
 * not-found handler and the content-type parsers of the instance it is registered on).
 *
 * - `GET /` (and `HEAD /`): the local bundle document, `application/json`, with a strong `ETag`
 *   and `Cache-Control: max-age=<refresh hint>`; `If-None-Match` → 304.
 * - `If-None-Match: <current ETag>` plus `Prefer: wait=<s>` holds the request until the bundle
 *   changes (→ 200 and `Preference-Applied`) or the wait ends (→ 304).
 * - Other methods on a served path → 405, other paths → 404, as SPIRE's endpoint answers.
 * - No client authentication of any kind (SPIFFE Federation §5.2.1.3 / §5.2.2.3).
 */
export const bundleEndpointPlugin: FastifyPluginAsync<BundleEndpointOptions> = async (app, opts) => {
  const deps = defaultEndpointDeps(opts.deps);
  const maxWait = Math.min(opts.maxWaitSeconds ?? MAX_WAIT_SECONDS, MAX_WAIT_SECONDS);
  const retryAfter = String(opts.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS);
  const held = new HeldRequests<ServerResponse>({
    max: opts.maxHeldRequests ?? DEFAULT_MAX_HELD_REQUESTS,
    clock: deps.clock,
    ...(opts.holdTickMs !== undefined ? { tickMs: opts.holdTickMs } : {}),
  });
  const local = opts.local;
  const mapPath = opts.bundleMap?.path;
  if (mapPath !== undefined && (!mapPath.startsWith('/') || mapPath === '/')) {
    throw new TypeError(
      `bundleMap.path must start with "/" and differ from "/", got ${JSON.stringify(mapPath)}`,
    );
  }
  const served = new Set(['/', ...(mapPath !== undefined ? [mapPath] : [])]);

  const unsubscribe = local.subscribe(() => held.releaseAll('changed'));
  // Held relay requests, one set per trust domain so a change releases only that domain's waiters.
  const relayHeld = new Map<string, HeldRequests>();
  const relayHeldCount = (): number => {
    let n = 0;
    for (const h of relayHeld.values()) n += h.size;
    return n;
  };
  const releaseRelayed = (reason: ReleaseReason, td?: string): void => {
    for (const [name, h] of relayHeld) {
      if (td !== undefined && name !== td) continue;
      h.releaseAll(reason);
      relayHeld.delete(name);
    }
  };
  const unsubscribeRelay = opts.relay?.subscribe((td) => releaseRelayed('changed', td));
  app.addHook('preClose', async () => {
    held.releaseAll('closing');
    releaseRelayed('closing');
  });
  app.addHook('onClose', async () => {
    unsubscribe();
    unsubscribeRelay?.();
  });

  const controller: BundleEndpointController = {
    heldRequests: () => held.size + relayHeldCount(),
    releaseHeld: () => {
      held.releaseAll('closing');
      releaseRelayed('closing');
    },
  };
  app.decorate('bundleEndpoint', controller);

  // Request bodies are never read: nothing here accepts one, and 405/404 must not depend on them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

  app.setNotFoundHandler((request, reply) => {
    const path = pathOf(request.url);
    if (served.has(path) || (opts.relay && path.startsWith(RELAY_PATH_PREFIX))) {
      return reply.code(405).header('allow', 'GET, HEAD').type(TEXT).send(BODY_405);
    }
    return reply.code(404).type(TEXT).send(BODY_404);
  });

  const notReady = (reply: FastifyReply): FastifyReply =>
    reply.code(503).header('retry-after', '1').type(TEXT).send(BODY_NOT_READY);

  /**
   * Holds a request until the bundle changes or its wait ends. The reply is hijacked at once, so
   * fastify keeps no promise per held request, and the release writes each answer straight to
   * the node response with headers built once per version: waking 10,000 is a loop of writes.
   *
   * Nothing is allocated per held request but its waiter (and a Map entry): the release callback
   * is shared by every request held on one version with one wait, the close listener by all, and
   * no property is added to the response. With 10,000 held, every per-request object is heap
   * that each GC during the release marks, which slows the answers themselves.
   */
  // While anyone waits for the next version, the source is read at the fast cadence: one watch
  // for all held requests, dropped when the last is answered.
  let unwatch: (() => void) | undefined;
  /** Held responses → their handles. */
  const heldBy = new Map<ServerResponse, HeldRequest>();
  /** The `close` listener of every held response: the client went away, so let its request go. */
  function cancelOnClose(this: ServerResponse): void {
    heldBy.get(this)?.cancel();
  }
  /** Per published version, per wait (s): the release callback its held requests share. */
  const releasers = new WeakMap<PublishedBundle, Map<number, ReleaseCallback<ServerResponse>>>();
  const releaserFor = (doc: PublishedBundle, waitSeconds: number): ReleaseCallback<ServerResponse> => {
    let byWait = releasers.get(doc);
    if (!byWait) {
      byWait = new Map();
      releasers.set(doc, byWait);
    }
    let release = byWait.get(waitSeconds);
    if (!release) {
      const applied = `wait=${waitSeconds}`;
      release = (reason, res) => {
        // The close listener stays (removing it from 10,000 responses cost ~10 ms of a
        // release): with no entry for the response it does nothing.
        heldBy.delete(res);
        if (held.size === 0 && unwatch !== undefined) {
          unwatch();
          unwatch = undefined;
        }
        if (reason === 'cancelled') return;
        const now = local.current() ?? doc;
        answerHeld(res, now, applied, reason === 'changed' && now.etag !== doc.etag);
      };
      byWait.set(waitSeconds, release);
    }
    return release;
  };
  const holdUntilChange = (reply: FastifyReply, doc: PublishedBundle, waitSeconds: number): FastifyReply => {
    const res = reply.raw;
    const handle = held.hold(waitSeconds * 1000, releaserFor(doc, waitSeconds), res);
    if (!handle) return reply.code(503).header('retry-after', retryAfter).type(TEXT).send(BODY_TOO_MANY);
    reply.hijack();
    unwatch ??= local.watch?.();
    // A held request whose client goes away is released at once.
    heldBy.set(res, handle);
    res.on('close', cancelOnClose);
    return reply;
  };

  app.get('/', (request: FastifyRequest, reply: FastifyReply) => {
    const doc = local.current();
    if (!doc) return notReady(reply);
    const inm = evaluateIfNoneMatch(request.headers['if-none-match'], doc.etag);
    if (inm === 'absent' || inm === 'no-match') return sendDocument(reply, doc);
    if (inm === 'match') {
      const wait = preferredWaitSeconds(request.headers.prefer, maxWait);
      if (wait !== undefined && wait > 0) return holdUntilChange(reply, doc, wait);
    }
    return sendNotModified(reply, doc);
  });

  if (opts.relay) {
    const relay = opts.relay;
    if (mapPath?.startsWith(RELAY_PATH_PREFIX)) {
      throw new TypeError(
        `bundleMap.path must not be under ${RELAY_PATH_PREFIX} when relaying, got ${mapPath}`,
      );
    }
    const maxHeld = opts.maxHeldRequests ?? DEFAULT_MAX_HELD_REQUESTS;
    const relayDoc = (td: string): RelayDocument | undefined => {
      const bundle = relay.bundle(td);
      // SPIFFE Federation §4.2: a bundle is served only under its own trust domain.
      return bundle && bundle.trustDomain.name === td ? relayDocument(bundle) : undefined;
    };
    const observe = (result: RelayRequestResult): void => {
      try {
        opts.onRelayRequest?.(result);
      } catch {
        // A metrics hook never fails a request.
      }
    };
    const tooMany = (reply: FastifyReply): FastifyReply => {
      observe('too_many');
      return reply.code(503).header('retry-after', retryAfter).type(TEXT).send(BODY_TOO_MANY);
    };
    const notRelayed = (reply: FastifyReply, td: string): FastifyReply => {
      observe('not_found');
      return reply
        .code(404)
        .header('cache-control', 'no-store')
        .type('application/json')
        .send(
          JSON.stringify({
            ok: false,
            code: 'ERR_ENDPOINT_RELAY_NOT_FOUND',
            message: `no relayed bundle for trust domain ${JSON.stringify(td.slice(0, 255))}`,
          }),
        );
    };
    const sendRelayed = (reply: FastifyReply, doc: RelayDocument, applied?: string): FastifyReply => {
      observe('served');
      reply.header('etag', doc.etag).header('cache-control', `max-age=${doc.maxAge}`);
      if (applied !== undefined) reply.header('preference-applied', applied);
      return reply.code(200).type('application/json').send(doc.body);
    };
    const relayNotModified = (reply: FastifyReply, doc: RelayDocument): FastifyReply => {
      observe('not_modified');
      return reply.code(304).header('etag', doc.etag).header('cache-control', `max-age=${doc.maxAge}`).send();
    };
    app.get(`${RELAY_PATH_PREFIX}:trustDomain`, (request: FastifyRequest, reply: FastifyReply) => {
      const td = (request.params as { trustDomain: string }).trustDomain;
      const doc = relayDoc(td);
      if (!doc) return notRelayed(reply, td);
      const inm = evaluateIfNoneMatch(request.headers['if-none-match'], doc.etag);
      if (inm === 'absent' || inm === 'no-match') return sendRelayed(reply, doc);
      const wait = inm === 'match' ? preferredWaitSeconds(request.headers.prefer, maxWait) : undefined;
      if (wait === undefined || wait <= 0) return relayNotModified(reply, doc);
      if (held.size + relayHeldCount() >= maxHeld) return tooMany(reply);
      let set = relayHeld.get(td);
      if (!set) {
        set = new HeldRequests({
          max: maxHeld,
          clock: deps.clock,
          ...(opts.holdTickMs !== undefined ? { tickMs: opts.holdTickMs } : {}),
        });
        relayHeld.set(td, set);
      }
      const applied = `wait=${wait}`;
      return new Promise<FastifyReply>((resolve) => {
        const onClose = (): void => handle?.cancel();
        const handle = set.hold(wait * 1000, () => {
          reply.raw.off('close', onClose);
          const now = relayDoc(td);
          if (!now) resolve(notRelayed(reply, td));
          else if (now.etag !== doc.etag) resolve(sendRelayed(reply, now, applied));
          else resolve(relayNotModified(reply.header('preference-applied', applied), now));
        });
        if (!handle) {
          resolve(tooMany(reply));
          return;
        }
        reply.raw.once('close', onClose);
      });
    });
  }

  if (mapPath !== undefined) {
    const federated = opts.bundleMap?.federated;
    app.get(mapPath, (request: FastifyRequest, reply: FastifyReply) => {
      const doc = local.current();
      if (!doc) return notReady(reply);
      const own = doc.bundle.trustDomain.name;
      // SPIFFE Federation §4.2: one bundle per trust domain; the local one is always ours.
      const others = (federated?.bundles() ?? []).filter((b) => b.trustDomain.name !== own);
      const body = Buffer.from(marshalBundleMap([doc.bundle, ...others]), 'utf8');
      const etag = entityTag(body);
      reply.header('etag', etag).header('cache-control', `max-age=${doc.refreshHint}`);
      const inm = evaluateIfNoneMatch(request.headers['if-none-match'], etag);
      if (inm === 'match' || inm === 'any') return reply.code(304).send();
      return reply.code(200).type('application/json').send(body);
    });
  }
};
// Registered without encapsulation (what fastify-plugin does), so the not-found handler and the
// parsers apply to the instance the caller passes.
(bundleEndpointPlugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;

/** Extra options of {@link buildBundleEndpointApp}. */
export interface BundleEndpointAppOptions extends BundleEndpointOptions {
  /** Builds the node server (e.g. an `https.Server`); fastify's default http server otherwise. */
  readonly serverFactory?: (handler: (req: never, res: never) => void) => Server;
  /** Keep-alive timeout of idle connections, ms. Default 72 s (fastify's). */
  readonly keepAliveTimeoutMs?: number;
}

/**
 * Builds a fastify app serving the bundle endpoint. Never listens: call `app.listen()` (see
 * {@link startBundleEndpoint}) or test it with `app.inject()`.
 *
 * @example
 * const app = await buildBundleEndpointApp({ local });
 * const res = await app.inject({ method: 'GET', url: '/' });
 */
export async function buildBundleEndpointApp(opts: BundleEndpointAppOptions): Promise<BundleEndpointApp> {
  const app = Fastify({
    logger: false,
    exposeHeadRoutes: true,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    bodyLimit: 1024,
    requestIdHeader: false,
    ...(opts.keepAliveTimeoutMs !== undefined ? { keepAliveTimeout: opts.keepAliveTimeoutMs } : {}),
    ...(opts.serverFactory ? { serverFactory: opts.serverFactory as never } : {}),
  });
  await app.register(bundleEndpointPlugin, opts);
  await app.ready();
  return app as unknown as BundleEndpointApp;
}
