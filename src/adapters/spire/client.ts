import { isIP } from 'node:net';
import {
  type ChannelCredentials,
  type ChannelOptions,
  Client,
  credentials,
  Metadata,
  type MethodDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { SpireError } from '../../errors.js';
import { parseSpireAddress, type SpireAddress } from './address.js';
import { WireBundleCache } from './bundle-cache.js';
import {
  type BundleFields,
  bundleFromWire,
  bundleMaskToWire,
  bundleToWire,
  type FederationRelationship,
  type MintedX509Svid,
  type RelationshipFields,
  relationshipFromWire,
  relationshipMaskToWire,
  x509SvidFromWire,
} from './convert.js';
import { loadSpireApi, type SpireApiDefinition } from './proto.js';
import { DEFAULT_RETRY_POLICY, type RetryPolicy, retryDelayMs } from './retry.js';
import {
  GRPC_STATUS,
  type GrpcStatusName,
  grpcStatusName,
  isRetryableStatus,
  spireErrorCodeFor,
} from './status.js';
import { checkServerSvid, checkTlsOptions, type SpireTlsOptions } from './tls.js';
import type {
  WireBundle,
  WireBundleResult,
  WireDeleteMode,
  WireDeleteResult,
  WireFederationRelationship,
  WireServingStatus,
  WireStatus,
  WireX509Svid,
} from './wire.js';

/** `token`, remembered in `seen`; a token seen before is refused (a server that would page forever). */
function nextPageToken(seen: Set<string>, token: string, method: string): string {
  if (token !== '' && seen.has(token)) {
    throw new SpireError('ERR_SPIRE_RESPONSE', `SPIRE ${method} returned page token "${token}" twice`);
  }
  seen.add(token);
  return token;
}

/** A uint64 from its decimal wire form (proto-loader's longs: String). */
function uint64(raw: string, what: string): bigint {
  if (!/^\d{1,20}$/.test(raw) || BigInt(raw) > 0xffff_ffff_ffff_ffffn) {
    throw new SpireError('ERR_SPIRE_RESPONSE', `${what} ${JSON.stringify(raw)} is not a uint64`);
  }
  return BigInt(raw);
}

/** Default deadline of every call, ms. */
export const DEFAULT_SPIRE_TIMEOUT_MS = 5000;

/**
 * Default page size when following ListFederatedBundles / ListFederationRelationships pages. A
 * bundle of one CA and two JWT keys is ~714 bytes on the wire (docs/scaling.md), an RSA or
 * mid-rotation one up to ~2.5 KiB: 1,000 per page stays under 2.5 MiB, inside gRPC's 4 MiB receive
 * limit, and a resync of 10,000 bundles takes 10 calls per server instead of 200.
 */
export const DEFAULT_PAGE_SIZE = 1000;

/** Options of {@link SpireServerClient}. */
export interface SpireServerClientOptions {
  /** `unix:///path/to/api.sock` or `dns:///host:port` (see {@link parseSpireAddress}). */
  readonly address: string;
  /** Required for `dns:` addresses: mTLS with an admin X509-SVID. Refused for unix sockets. */
  readonly tls?: SpireTlsOptions;
  /** Deadline of each attempt, ms. Default {@link DEFAULT_SPIRE_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Retries on UNAVAILABLE / DEADLINE_EXCEEDED only. */
  readonly retry?: RetryPolicy;
  /** Loaded API definitions to share between clients; loaded here when absent. */
  readonly api?: SpireApiDefinition;
  /** Clock for deadlines, ms since the epoch. Default `Date.now`. */
  readonly now?: () => number;
  /** Waits between retries; must reject or resolve early when `signal` aborts. Default: a timer. */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Jitter source in [0, 1). Default `Math.random`. */
  readonly random?: () => number;
  /** Called before each retry (metrics, logs). */
  readonly onRetry?: (info: RetryInfo) => void;
  /** Extra grpc-js channel options (merged over the client's defaults). */
  readonly channelOptions?: ChannelOptions;
  /**
   * Reuses the conversion of bundles read before when their content is unchanged (GetBundle,
   * ListFederatedBundles, GetFederatedBundle): pass one cache to several clients to share it.
   * Default: a cache of this client's own.
   */
  readonly bundleCache?: WireBundleCache;
}

/** What {@link SpireServerClientOptions.onRetry} receives. */
export interface RetryInfo {
  /** RPC method, e.g. `BatchSetFederatedBundle`. */
  readonly method: string;
  /** The attempt that just failed (1-based). */
  readonly attempt: number;
  readonly delayMs: number;
  readonly status: GrpcStatusName;
  readonly message: string;
}

/** Per-call options. */
export interface SpireCallOptions {
  readonly signal?: AbortSignal;
  /** Overrides the client's deadline for this call, ms. */
  readonly timeoutMs?: number;
}

/** The per-item status of a batch call (`spire.api.types.Status`). */
export interface BatchItemStatus {
  /** google.rpc.Code number; 0 = OK. */
  readonly code: number;
  readonly name: GrpcStatusName;
  readonly message: string;
}

/** One item of a Batch{Create,Update,Set}FederatedBundle result, in request order. */
export interface BundleItemResult {
  /** The trust domain of the request item. */
  readonly trustDomain: string;
  readonly ok: boolean;
  readonly status: BatchItemStatus;
  /** The bundle as SPIRE stored it (subject to the output mask), for OK items. */
  readonly bundle?: TrustBundle;
  /** The item's failure as a coded error, for failed items. */
  readonly error?: SpireError;
}

/** One item of a BatchDeleteFederatedBundle result. */
export interface DeleteItemResult {
  /** The trust domain string SPIRE echoes (the request's). */
  readonly trustDomain: string;
  readonly ok: boolean;
  readonly status: BatchItemStatus;
  readonly error?: SpireError;
}

/** A page of federated bundles. */
export interface FederatedBundlePage {
  readonly bundles: TrustBundle[];
  /** `''` when SPIRE says there are no more pages. */
  readonly nextPageToken: string;
}

/** A page of federation relationships. */
export interface RelationshipPage {
  readonly relationships: FederationRelationship[];
  readonly nextPageToken: string;
}

/** The result of the gRPC health check. */
export type ServingStatus = WireServingStatus;

/** What happens to entries federating with a deleted bundle (SPIRE's `BatchDeleteFederatedBundleRequest.Mode`). */
export type BundleDeleteMode = WireDeleteMode;

function abortError(method: string): SpireError {
  return new SpireError('ERR_SPIRE_ABORTED', `SPIRE ${method} aborted by the caller`);
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function itemStatus(s: WireStatus | null): BatchItemStatus {
  const code = s?.code ?? GRPC_STATUS.UNKNOWN;
  return { code, name: grpcStatusName(code), message: s?.message ?? 'missing status' };
}

function itemError(method: string, trustDomain: string, st: BatchItemStatus): SpireError | undefined {
  if (st.code === 0) return undefined;
  return new SpireError(
    spireErrorCodeFor(st.code),
    `SPIRE ${method} refused trust domain "${trustDomain}": ${st.name}: ${st.message}`,
  );
}

function tdName(td: TrustDomain | string): string {
  return typeof td === 'string' ? td : td.name;
}

/**
 * A typed client of the SPIRE server API (spire-api-sdk v1.15): the Bundle service, the read side
 * of the TrustDomain service, SVID minting and gRPC health.
 *
 * Every call has a deadline and is retried with capped exponential backoff on UNAVAILABLE and
 * DEADLINE_EXCEEDED only. Failures are {@link SpireError}s coded by gRPC status. Batch calls
 * succeed as a whole while single items may fail: each item's status is returned, never thrown.
 * Nothing connects until the first call.
 *
 * Note: a retried BatchCreate whose first attempt did reach SPIRE answers ALREADY_EXISTS per item.
 *
 * @example
 * const spire = new SpireServerClient({ address: 'unix:///tmp/spire-server/private/api.sock' });
 * const own = await spire.getBundle();
 * const results = await spire.batchSetFederatedBundle([peerBundle]);
 * for (const r of results) if (!r.ok) console.error(r.trustDomain, r.status.name, r.status.message);
 * spire.close();
 */
export class SpireServerClient {
  /** The parsed address. */
  readonly address: SpireAddress;
  readonly #client: Client;
  readonly #api: SpireApiDefinition;
  readonly #timeoutMs: number;
  readonly #retry: Required<RetryPolicy>;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  readonly #onRetry: ((info: RetryInfo) => void) | undefined;
  readonly #bundles: WireBundleCache;
  #lastIdentityFailure: string | undefined;

  /** @throws SpireError `ERR_SPIRE_ADDRESS`, `ERR_SPIRE_CREDENTIALS` */
  constructor(options: SpireServerClientOptions) {
    this.address = parseSpireAddress(options.address);
    this.#api = options.api ?? loadSpireApi();
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_SPIRE_TIMEOUT_MS;
    if (!(this.#timeoutMs > 0)) throw new TypeError('SpireServerClient: timeoutMs must be > 0');
    this.#retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    if (!Number.isInteger(this.#retry.maxAttempts) || this.#retry.maxAttempts < 1) {
      throw new TypeError('SpireServerClient: retry.maxAttempts must be a positive integer');
    }
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#random = options.random ?? Math.random;
    this.#onRetry = options.onRetry;
    this.#bundles = options.bundleCache ?? new WireBundleCache();
    const channelOptions: ChannelOptions = {
      'grpc.enable_retries': 0,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
    };
    let creds: ChannelCredentials;
    if (this.address.kind === 'unix') {
      if (options.tls) {
        throw new SpireError(
          'ERR_SPIRE_ADDRESS',
          'SPIRE server address: the unix socket API is plain gRPC; tls applies to dns: addresses only',
        );
      }
      creds = credentials.createInsecure();
    } else {
      if (!options.tls) {
        throw new SpireError(
          'ERR_SPIRE_ADDRESS',
          `SPIRE server address ${options.address}: TCP needs tls (an admin X509-SVID and the trust bundle)`,
        );
      }
      const tls = checkTlsOptions(options.tls);
      creds = credentials.createSsl(tls.rootCerts, tls.privateKey, tls.certChain, {
        // Verify the server as an X509-SVID with the SPIRE server ID, not by host name.
        checkServerIdentity: (_host, cert) => {
          const err = checkServerSvid(cert, tls.serverId);
          this.#lastIdentityFailure = err?.message;
          return err;
        },
      });
      // TLS SNI cannot be an IP address (RFC 6066 §3); name the trust domain instead.
      if (isIP(this.address.host) !== 0) {
        channelOptions['grpc.ssl_target_name_override'] = tls.serverTrustDomain.name;
      }
    }
    this.#client = new Client(this.address.target, creds, { ...channelOptions, ...options.channelOptions });
  }

  /** Closes the channel; later calls fail. */
  close(): void {
    this.#client.close();
  }

  // ---- transport ----

  #unaryOnce<Req, Res>(
    method: MethodDefinition<Req, Res>,
    request: Req,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const call = this.#client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        new Metadata(),
        { deadline: new Date(this.#now() + timeoutMs) },
        (err: ServiceError | null, value?: Res) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(err);
          else resolve(value as Res);
        },
      );
      function onAbort() {
        call.cancel();
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async #call<Res>(
    service: 'bundle' | 'trustDomain' | 'svid' | 'health',
    name: string,
    request: object,
    opts: SpireCallOptions = {},
  ): Promise<Res> {
    const method = this.#api[service][name] as MethodDefinition<object, Res> | undefined;
    if (!method) throw new TypeError(`SpireServerClient: unknown method ${service}.${name}`);
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw abortError(name);
      try {
        return await this.#unaryOnce(method, request, timeoutMs, opts.signal);
      } catch (raw) {
        const err = raw as Partial<ServiceError>;
        const code = typeof err.code === 'number' ? err.code : GRPC_STATUS.UNKNOWN;
        const details = err.details ?? (raw instanceof Error ? raw.message : String(raw));
        if (opts.signal?.aborted) throw abortError(name);
        if (isRetryableStatus(code) && attempt < this.#retry.maxAttempts) {
          const delayMs = retryDelayMs(attempt, this.#retry, this.#random);
          this.#onRetry?.({ method: name, attempt, delayMs, status: grpcStatusName(code), message: details });
          await this.#sleep(delayMs, opts.signal);
          continue;
        }
        throw this.#mapError(name, code, details, attempt, raw);
      }
    }
  }

  #mapError(method: string, code: number, details: string, attempts: number, cause: unknown): SpireError {
    const where =
      this.address.kind === 'unix' ? this.address.path : `${this.address.host}:${this.address.port}`;
    const tries = attempts > 1 ? ` (after ${attempts} attempts)` : '';
    if (code === GRPC_STATUS.UNAVAILABLE && this.#lastIdentityFailure) {
      return new SpireError(
        'ERR_SPIRE_CREDENTIALS',
        `SPIRE ${method} at ${where}: server identity rejected: ${this.#lastIdentityFailure}`,
        { cause },
      );
    }
    return new SpireError(
      spireErrorCodeFor(code),
      `SPIRE ${method} at ${where} failed: ${grpcStatusName(code)}: ${details}${tries}`,
      { cause },
    );
  }

  #bundleResults(
    method: string,
    sent: readonly string[],
    results: WireBundleResult[],
    cached = true,
  ): BundleItemResult[] {
    if (results.length !== sent.length) {
      throw new SpireError(
        'ERR_SPIRE_RESPONSE',
        `SPIRE ${method} answered ${results.length} results for ${sent.length} bundles`,
      );
    }
    return results.map((r, i) => {
      const trustDomain = sent[i]!;
      const status = itemStatus(r.status);
      const error = itemError(method, trustDomain, status);
      const out: { -readonly [K in keyof BundleItemResult]: BundleItemResult[K] } = {
        trustDomain,
        ok: status.code === 0,
        status,
      };
      if (error) out.error = error;
      if (status.code === 0 && r.bundle)
        out.bundle = cached ? this.#bundles.convert(r.bundle) : bundleFromWire(r.bundle);
      return out;
    });
  }

  // ---- Bundle service ----

  /**
   * The server's own trust bundle (GetBundle). `fields` selects what SPIRE fills in (an output
   * mask); all fields by default.
   */
  async getBundle(opts: SpireCallOptions & { fields?: BundleFields } = {}): Promise<TrustBundle> {
    const req = opts.fields ? { output_mask: bundleMaskToWire(opts.fields) } : {};
    return this.#bundles.convert(await this.#call<WireBundle>('bundle', 'GetBundle', req, opts));
  }

  /**
   * Only the `sequence_number` of the server's own bundle (GetBundle with an output mask that asks
   * for nothing else): a few bytes instead of every authority, for a cheap "did it change?" poll.
   * SPIRE's datastore increments the number on every change of its own bundle (a prepared or
   * pruned authority, a taint, a revocation).
   */
  async getBundleSequence(opts: SpireCallOptions = {}): Promise<bigint> {
    const res = await this.#call<Partial<WireBundle>>(
      'bundle',
      'GetBundle',
      { output_mask: bundleMaskToWire({ sequenceNumber: true }) },
      opts,
    );
    return uint64(res.sequence_number ?? '0', 'GetBundle: sequence_number');
  }

  /** Number of stored bundles, the server's own included (CountBundles). */
  async countBundles(opts: SpireCallOptions = {}): Promise<number> {
    const res = await this.#call<{ count: number }>('bundle', 'CountBundles', {}, opts);
    return res.count;
  }

  /**
   * One page of ListFederatedBundles, exactly as SPIRE returns it: a page may be short or empty
   * (the server's own bundle is filtered after paging) while `nextPageToken` is non-empty.
   * `pageSize <= 0` asks for everything in one response.
   */
  async listFederatedBundlesPage(
    opts: SpireCallOptions & { pageSize?: number; pageToken?: string; fields?: BundleFields } = {},
  ): Promise<FederatedBundlePage> {
    const req = {
      page_size: opts.pageSize ?? DEFAULT_PAGE_SIZE,
      page_token: opts.pageToken ?? '',
      ...(opts.fields ? { output_mask: bundleMaskToWire(opts.fields) } : {}),
    };
    const res = await this.#call<{ bundles: WireBundle[]; next_page_token: string }>(
      'bundle',
      'ListFederatedBundles',
      req,
      opts,
    );
    return { bundles: res.bundles.map((b) => this.#bundles.convert(b)), nextPageToken: res.next_page_token };
  }

  /**
   * The trust domain and `sequence_number` of every federated bundle (ListFederatedBundles with
   * an output mask asking for nothing else, all pages): ~40 bytes a bundle instead of ~700, and
   * no certificate parsed — the cheap "did anything change?" read of the sync's periodic check.
   * @throws SpireError `ERR_SPIRE_RESPONSE` for a repeated page token or a sequence that is not a uint64.
   */
  async listFederatedBundleSequences(
    opts: SpireCallOptions & { pageSize?: number } = {},
  ): Promise<Map<string, bigint>> {
    const out = new Map<string, bigint>();
    const seen = new Set<string>();
    let token = '';
    do {
      const res = await this.#call<{ bundles: Partial<WireBundle>[]; next_page_token: string }>(
        'bundle',
        'ListFederatedBundles',
        {
          page_size: opts.pageSize ?? DEFAULT_PAGE_SIZE,
          page_token: token,
          output_mask: bundleMaskToWire({ sequenceNumber: true }),
        },
        opts,
      );
      for (const b of res.bundles) {
        const td = b.trust_domain ?? '';
        out.set(
          td,
          uint64(b.sequence_number ?? '0', `ListFederatedBundles: sequence_number of ${JSON.stringify(td)}`),
        );
      }
      token = nextPageToken(seen, res.next_page_token, 'ListFederatedBundles');
    } while (token !== '');
    return out;
  }

  /**
   * Every federated bundle, following pages until SPIRE returns an empty token.
   * @throws SpireError `ERR_SPIRE_RESPONSE` when a token repeats (a server that would loop forever).
   */
  async *iterateFederatedBundles(
    opts: SpireCallOptions & { pageSize?: number; fields?: BundleFields } = {},
  ): AsyncGenerator<TrustBundle, void, undefined> {
    let token = '';
    const seen = new Set<string>();
    do {
      const page = await this.listFederatedBundlesPage({ ...opts, pageToken: token });
      yield* page.bundles;
      token = nextPageToken(seen, page.nextPageToken, 'ListFederatedBundles');
    } while (token !== '');
  }

  /** Every federated bundle as an array (see {@link SpireServerClient.iterateFederatedBundles}). */
  async listFederatedBundles(
    opts: SpireCallOptions & { pageSize?: number; fields?: BundleFields } = {},
  ): Promise<TrustBundle[]> {
    const out: TrustBundle[] = [];
    for await (const b of this.iterateFederatedBundles(opts)) out.push(b);
    return out;
  }

  /**
   * The stored bundle of another trust domain (GetFederatedBundle).
   * @throws SpireError `ERR_SPIRE_NOT_FOUND` when SPIRE has none; `ERR_SPIRE_INVALID_ARGUMENT`
   *   for the server's own trust domain.
   */
  async getFederatedBundle(
    trustDomain: TrustDomain | string,
    opts: SpireCallOptions & { fields?: BundleFields } = {},
  ): Promise<TrustBundle> {
    const req = {
      trust_domain: tdName(trustDomain),
      ...(opts.fields ? { output_mask: bundleMaskToWire(opts.fields) } : {}),
    };
    return this.#bundles.convert(await this.#call<WireBundle>('bundle', 'GetFederatedBundle', req, opts));
  }

  /** Like {@link SpireServerClient.getFederatedBundle} but `undefined` when SPIRE has none. */
  async findFederatedBundle(
    trustDomain: TrustDomain | string,
    opts: SpireCallOptions & { fields?: BundleFields } = {},
  ): Promise<TrustBundle | undefined> {
    try {
      return await this.getFederatedBundle(trustDomain, opts);
    } catch (err) {
      if (err instanceof SpireError && err.code === 'ERR_SPIRE_NOT_FOUND') return undefined;
      throw err;
    }
  }

  /** Inserts bundles (BatchCreateFederatedBundle); an existing one is an ALREADY_EXISTS item. */
  async batchCreateFederatedBundle(
    bundles: readonly TrustBundle[],
    opts: SpireCallOptions & { fields?: BundleFields } = {},
  ): Promise<BundleItemResult[]> {
    return this.#batchBundles('BatchCreateFederatedBundle', bundles, {}, opts);
  }

  /**
   * Updates existing bundles (BatchUpdateFederatedBundle); a missing one is a NOT_FOUND item.
   * `inputFields` limits what is written (SPIRE's input mask; all fields when absent).
   */
  async batchUpdateFederatedBundle(
    bundles: readonly TrustBundle[],
    opts: SpireCallOptions & { inputFields?: BundleFields; fields?: BundleFields } = {},
  ): Promise<BundleItemResult[]> {
    return this.#batchBundles(
      'BatchUpdateFederatedBundle',
      bundles,
      opts.inputFields ? { input_mask: bundleMaskToWire(opts.inputFields) } : {},
      opts,
    );
  }

  /** Creates or fully replaces bundles (BatchSetFederatedBundle, what `spire-server bundle set` uses). */
  async batchSetFederatedBundle(
    bundles: readonly TrustBundle[],
    opts: SpireCallOptions & { fields?: BundleFields } = {},
  ): Promise<BundleItemResult[]> {
    return this.#batchBundles('BatchSetFederatedBundle', bundles, {}, opts);
  }

  /** One Batch{Create,Update,Set}FederatedBundle call and its per-item results, in request order. */
  async #batchBundles(
    method: 'BatchCreateFederatedBundle' | 'BatchUpdateFederatedBundle' | 'BatchSetFederatedBundle',
    bundles: readonly TrustBundle[],
    extra: Record<string, unknown>,
    opts: SpireCallOptions & { fields?: BundleFields },
  ): Promise<BundleItemResult[]> {
    const req = {
      bundle: bundles.map(bundleToWire),
      ...extra,
      ...(opts.fields ? { output_mask: bundleMaskToWire(opts.fields) } : {}),
    };
    const res = await this.#call<{ results: WireBundleResult[] }>('bundle', method, req, opts);
    if (method === 'BatchSetFederatedBundle') {
      // What SPIRE stored is what was sent: later reads of it reuse the very bundle objects given.
      res.results.forEach((r, i) => {
        if (r.status?.code === 0 && req.bundle[i]) this.#bundles.remember(req.bundle[i], bundles[i]!);
      });
    }
    return this.#bundleResults(
      method,
      bundles.map((b) => b.trustDomain.name),
      res.results,
      // A masked answer is partial: never let it replace what the cache remembers.
      opts.fields === undefined,
    );
  }

  /**
   * Deletes bundles (BatchDeleteFederatedBundle). `mode` (default RESTRICT) decides what happens
   * to registration entries federating with them: RESTRICT refuses (FAILED_PRECONDITION item).
   */
  async batchDeleteFederatedBundle(
    trustDomains: readonly (TrustDomain | string)[],
    opts: SpireCallOptions & { mode?: BundleDeleteMode } = {},
  ): Promise<DeleteItemResult[]> {
    const names = trustDomains.map(tdName);
    const res = await this.#call<{ results: WireDeleteResult[] }>(
      'bundle',
      'BatchDeleteFederatedBundle',
      { trust_domains: names, mode: opts.mode ?? 'RESTRICT' },
      opts,
    );
    if (res.results.length !== names.length) {
      throw new SpireError(
        'ERR_SPIRE_RESPONSE',
        `SPIRE BatchDeleteFederatedBundle answered ${res.results.length} results for ${names.length} trust domains`,
      );
    }
    return res.results.map((r, i) => {
      const status = itemStatus(r.status);
      const trustDomain = r.trust_domain || names[i]!;
      const error = itemError('BatchDeleteFederatedBundle', trustDomain, status);
      return { trustDomain, ok: status.code === 0, status, ...(error ? { error } : {}) };
    });
  }

  // ---- TrustDomain service (read side) ----

  /** One page of ListFederationRelationships (same paging scheme as bundles). */
  async listFederationRelationshipsPage(
    opts: SpireCallOptions & { pageSize?: number; pageToken?: string; fields?: RelationshipFields } = {},
  ): Promise<RelationshipPage> {
    const req = {
      page_size: opts.pageSize ?? DEFAULT_PAGE_SIZE,
      page_token: opts.pageToken ?? '',
      ...(opts.fields ? { output_mask: relationshipMaskToWire(opts.fields) } : {}),
    };
    const res = await this.#call<{
      federation_relationships: WireFederationRelationship[];
      next_page_token: string;
    }>('trustDomain', 'ListFederationRelationships', req, opts);
    return {
      relationships: res.federation_relationships.map(relationshipFromWire),
      nextPageToken: res.next_page_token,
    };
  }

  /** Every federation relationship (each with its stored bundle, if any), following pages. */
  async listFederationRelationships(
    opts: SpireCallOptions & { pageSize?: number; fields?: RelationshipFields } = {},
  ): Promise<FederationRelationship[]> {
    const out: FederationRelationship[] = [];
    const seen = new Set<string>();
    let token = '';
    do {
      const page = await this.listFederationRelationshipsPage({ ...opts, pageToken: token });
      out.push(...page.relationships);
      token = nextPageToken(seen, page.nextPageToken, 'ListFederationRelationships');
    } while (token !== '');
    return out;
  }

  /**
   * One relationship (GetFederationRelationship), with its stored bundle if any.
   * @throws SpireError `ERR_SPIRE_NOT_FOUND` when there is none.
   */
  async getFederationRelationship(
    trustDomain: TrustDomain | string,
    opts: SpireCallOptions & { fields?: RelationshipFields } = {},
  ): Promise<FederationRelationship> {
    const req = {
      trust_domain: tdName(trustDomain),
      ...(opts.fields ? { output_mask: relationshipMaskToWire(opts.fields) } : {}),
    };
    return relationshipFromWire(
      await this.#call<WireFederationRelationship>('trustDomain', 'GetFederationRelationship', req, opts),
    );
  }

  // ---- SVID and health ----

  /**
   * Mints an X509-SVID for the single SPIFFE ID URI SAN of a PKCS#10 CSR (MintX509SVID). The ID
   * must be a workload of the server's trust domain. `ttlSeconds` 0 = the server's default.
   */
  async mintX509Svid(
    csrDer: Uint8Array,
    ttlSeconds = 0,
    opts: SpireCallOptions = {},
  ): Promise<MintedX509Svid> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 0 || ttlSeconds > 0x7fff_ffff) {
      throw new TypeError('mintX509Svid: ttlSeconds must be an int32 >= 0');
    }
    const res = await this.#call<{ svid: WireX509Svid | null }>(
      'svid',
      'MintX509SVID',
      { csr: Buffer.from(csrDer), ttl: ttlSeconds },
      opts,
    );
    if (!res.svid) throw new SpireError('ERR_SPIRE_RESPONSE', 'SPIRE MintX509SVID returned no SVID');
    return x509SvidFromWire(res.svid);
  }

  /**
   * gRPC health (`grpc.health.v1.Health/Check`, empty service name). SPIRE serves it on the unix
   * socket only and answers SERVING once its own bundle is stored.
   */
  async healthCheck(opts: SpireCallOptions = {}): Promise<ServingStatus> {
    const res = await this.#call<{ status: ServingStatus }>('health', 'Check', { service: '' }, opts);
    return res.status;
  }
}
