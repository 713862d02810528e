import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { K8sError, type K8sErrorCode } from '../../errors.js';

/**
 * The broker's narrow view of the Kubernetes API: list, watch, get, create, replace, replace
 * status and delete on plain JSON objects of a few resource types. Everything else in src/adapters/k8s is
 * written against this interface; {@link ClientNodeKubeApi} implements it with
 * `@kubernetes/client-node` (kubeconfig and in-cluster credentials, the watch stream).
 * @module
 */

/** A resource type: where its REST collection lives. */
export interface ResourceType {
  /** API group; `''` for the core group (`/api/v1`). */
  readonly group: string;
  readonly version: string;
  /** Lower-case plural, the collection's path segment. */
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

/** `spiffe-broker.dev/v1alpha1` FederationPeer (cluster-scoped, deploy/base/crd-federationpeer.yaml). */
export const FEDERATION_PEERS: ResourceType = Object.freeze({
  group: 'spiffe-broker.dev',
  version: 'v1alpha1',
  plural: 'federationpeers',
  kind: 'FederationPeer',
  namespaced: false,
});

/** spire-controller-manager's `spire.spiffe.io/v1alpha1` ClusterFederatedTrustDomain (read only). */
export const CLUSTER_FEDERATED_TRUST_DOMAINS: ResourceType = Object.freeze({
  group: 'spire.spiffe.io',
  version: 'v1alpha1',
  plural: 'clusterfederatedtrustdomains',
  kind: 'ClusterFederatedTrustDomain',
  namespaced: false,
});

/** Core v1 ConfigMaps. */
export const CONFIG_MAPS: ResourceType = Object.freeze({
  group: '',
  version: 'v1',
  plural: 'configmaps',
  kind: 'ConfigMap',
  namespaced: true,
});

/** Core v1 Namespaces. */
export const NAMESPACES: ResourceType = Object.freeze({
  group: '',
  version: 'v1',
  plural: 'namespaces',
  kind: 'Namespace',
  namespaced: false,
});

/**
 * `certificates.k8s.io/v1beta1` ClusterTrustBundles (cluster-scoped). kube-apiserver 1.33+ serves
 * them only with `--feature-gates=ClusterTrustBundle=true` and
 * `--runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true` (beta, off by default
 * through 1.36).
 */
export const CLUSTER_TRUST_BUNDLES: ResourceType = Object.freeze({
  group: 'certificates.k8s.io',
  version: 'v1beta1',
  plural: 'clustertrustbundles',
  kind: 'ClusterTrustBundle',
  namespaced: false,
});

/** `coordination.k8s.io/v1` Leases (leader election). */
export const LEASES: ResourceType = Object.freeze({
  group: 'coordination.k8s.io',
  version: 'v1',
  plural: 'leases',
  kind: 'Lease',
  namespaced: true,
});

/** `metadata` of an object, as far as the broker reads it. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Any Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

/** One event of a watch stream (`ERROR` events are handled by the API layer, never delivered). */
export interface WatchEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';
  readonly object: KubeObject;
}

/** How a watch ended without an error: the server closed it, or the resourceVersion expired. */
export type WatchEnd = 'closed' | 'gone';

/** Options shared by list and watch. */
export interface CollectionOptions {
  /** Namespace of a namespaced type; absent: all namespaces. */
  readonly namespace?: string;
  readonly labelSelector?: string;
  /** A field selector, e.g. `spec.signerName=example.com/signer` on ClusterTrustBundles. */
  readonly fieldSelector?: string;
  readonly signal?: AbortSignal;
}

/** The operations the broker needs. Every failure is a {@link KubeApiError}. */
export interface KubeApi {
  /** Lists a collection completely (following `continue` tokens). */
  list(
    type: ResourceType,
    opts?: CollectionOptions,
  ): Promise<{ items: KubeObject[]; resourceVersion: string }>;
  /**
   * Watches from `resourceVersion`, calling `onEvent` for each event, until the server ends the
   * stream (`'closed'`), reports the resourceVersion expired (`'gone'`, HTTP 410 or an ERROR event
   * with code 410), the signal aborts (rejects with its reason) or it fails (rejects).
   */
  watch(
    type: ResourceType,
    opts: CollectionOptions & { resourceVersion: string; timeoutSeconds?: number },
    onEvent: (event: WatchEvent) => void,
  ): Promise<WatchEnd>;
  /** The object, or undefined when it does not exist. */
  get(
    type: ResourceType,
    name: string,
    namespace?: string,
    signal?: AbortSignal,
  ): Promise<KubeObject | undefined>;
  create(type: ResourceType, obj: KubeObject, signal?: AbortSignal): Promise<KubeObject>;
  /** PUT; `obj.metadata.resourceVersion` makes it conditional (409 on a stale version). */
  replace(type: ResourceType, obj: KubeObject, signal?: AbortSignal): Promise<KubeObject>;
  /** PUT on the status subresource. */
  replaceStatus(type: ResourceType, obj: KubeObject, signal?: AbortSignal): Promise<KubeObject>;
  /**
   * Deletes, optionally only if the object still has this resourceVersion / uid. Resolves false
   * when it was already gone.
   */
  delete(
    type: ResourceType,
    name: string,
    namespace?: string,
    preconditions?: { resourceVersion?: string; uid?: string },
    signal?: AbortSignal,
  ): Promise<boolean>;
}

/**
 * A failed Kubernetes API call. `httpStatus` is 0 when no response arrived; `reason` is the
 * `Status.reason` the server gave (`AlreadyExists`, `Conflict`, `Expired`, …) when it gave one.
 */
export class KubeApiError extends K8sError {
  readonly httpStatus: number;
  readonly reason: string | undefined;

  constructor(
    code: K8sErrorCode,
    message: string,
    httpStatus: number,
    reason?: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.httpStatus = httpStatus;
    this.reason = reason;
  }
}

/** True when `err` is a 404 from the API server. */
export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.code === 'ERR_K8S_NOT_FOUND';
}

/** True when `err` is a 409 (stale resourceVersion or already exists). */
export function isConflict(err: unknown): boolean {
  return err instanceof KubeApiError && err.code === 'ERR_K8S_CONFLICT';
}

function codeForStatus(status: number): K8sErrorCode {
  if (status === 401 || status === 403) return 'ERR_K8S_FORBIDDEN';
  if (status === 404) return 'ERR_K8S_NOT_FOUND';
  if (status === 409) return 'ERR_K8S_CONFLICT';
  if (status === 410) return 'ERR_K8S_GONE';
  if (status === 422) return 'ERR_K8S_INVALID';
  if (status >= 500 || status === 429) return 'ERR_K8S_UNAVAILABLE';
  return 'ERR_K8S_RESPONSE';
}

/** Builds the error for a non-2xx answer from its `Status` body. */
export function statusError(what: string, status: number, body: unknown): KubeApiError {
  const s = (body ?? {}) as { message?: unknown; reason?: unknown };
  const message = typeof s.message === 'string' ? s.message : `HTTP ${status}`;
  const reason = typeof s.reason === 'string' ? s.reason : undefined;
  return new KubeApiError(codeForStatus(status), `${what}: ${message}`, status, reason);
}

/** `/api/v1/namespaces/ns/configmaps/name/status`, `/apis/g/v/plural`, … */
export function resourcePath(type: ResourceType, namespace?: string, name?: string, sub?: string): string {
  if (type.namespaced === false && namespace !== undefined) {
    throw new TypeError(`${type.kind} is cluster-scoped: no namespace`);
  }
  if (type.namespaced && namespace === undefined && name !== undefined) {
    throw new TypeError(`${type.kind} is namespaced: name ${name} needs a namespace`);
  }
  let p = type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
  if (namespace !== undefined) p += `/namespaces/${encodeURIComponent(namespace)}`;
  p += `/${type.plural}`;
  if (name !== undefined) p += `/${encodeURIComponent(name)}`;
  if (sub !== undefined) p += `/${sub}`;
  return p;
}

/** Where {@link ClientNodeKubeApi.load} finds credentials. */
export type KubeCredentials =
  /** A kubeconfig document's text. */
  | { readonly kubeconfig: string; readonly context?: string }
  /** A kubeconfig file. */
  | { readonly kubeconfigFile: string; readonly context?: string }
  /** The pod's service account (KUBERNETES_SERVICE_HOST/PORT, token and CA under /var/run/secrets). */
  | { readonly inCluster: true };

/** Options of {@link ClientNodeKubeApi}. */
export interface ClientNodeKubeApiOptions {
  /** Timeout of every non-watch request, milliseconds. Default 30 000. */
  readonly requestTimeoutMs?: number;
}

/** Page size of list requests. */
const LIST_PAGE_SIZE = 500;

/**
 * {@link KubeApi} over `@kubernetes/client-node`: its `KubeConfig` supplies the server URL and
 * credentials (client certificates, bearer tokens re-read from the service account's token file,
 * exec plugins) for every request, and its `Watch` reads watch streams.
 *
 * @example
 * const api = ClientNodeKubeApi.load({ inCluster: true });
 * const { items } = await api.list(FEDERATION_PEERS);
 */
export class ClientNodeKubeApi implements KubeApi {
  readonly #kc: KubeConfig;
  readonly #server: URL;
  readonly #timeoutMs: number;

  constructor(kc: KubeConfig, opts: ClientNodeKubeApiOptions = {}) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new K8sError('ERR_K8S_CONFIG', 'the kubeconfig has no current cluster');
    let server: URL;
    try {
      server = new URL(cluster.server);
    } catch (cause) {
      throw new K8sError(
        'ERR_K8S_CONFIG',
        `the kubeconfig's server ${JSON.stringify(cluster.server)} is not a URL`,
        {
          cause,
        },
      );
    }
    this.#kc = kc;
    this.#server = server;
    this.#timeoutMs = opts.requestTimeoutMs ?? 30_000;
  }

  /**
   * Loads credentials. Reads files (kubeconfig, service account token and CA) but connects to nothing.
   * @throws K8sError `ERR_K8S_CONFIG` when they are missing or unusable.
   */
  static load(creds: KubeCredentials, opts: ClientNodeKubeApiOptions = {}): ClientNodeKubeApi {
    const kc = new KubeConfig();
    try {
      if ('inCluster' in creds) kc.loadFromCluster();
      else if ('kubeconfig' in creds) kc.loadFromString(creds.kubeconfig);
      else kc.loadFromFile(creds.kubeconfigFile);
      if (!('inCluster' in creds) && creds.context !== undefined) kc.setCurrentContext(creds.context);
    } catch (cause) {
      throw new K8sError(
        'ERR_K8S_CONFIG',
        `cannot load Kubernetes credentials: ${(cause as Error).message}`,
        {
          cause,
        },
      );
    }
    return new ClientNodeKubeApi(kc, opts);
  }

  async list(
    type: ResourceType,
    opts: CollectionOptions = {},
  ): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    const path = resourcePath(type, opts.namespace);
    do {
      const query: Record<string, string> = { limit: String(LIST_PAGE_SIZE) };
      if (opts.labelSelector) query.labelSelector = opts.labelSelector;
      if (opts.fieldSelector) query.fieldSelector = opts.fieldSelector;
      if (cont) query.continue = cont;
      const res = await this.#request('GET', path, query, undefined, opts.signal);
      const body = res as { items?: unknown; metadata?: { resourceVersion?: unknown; continue?: unknown } };
      if (!Array.isArray(body.items)) {
        throw new KubeApiError('ERR_K8S_RESPONSE', `list ${type.plural}: the answer has no items array`, 200);
      }
      for (const it of body.items as KubeObject[]) {
        // Lists omit kind/apiVersion on items; restore them so objects look alike everywhere.
        items.push({ apiVersion: apiVersionOf(type), kind: type.kind, ...it });
      }
      resourceVersion =
        typeof body.metadata?.resourceVersion === 'string' ? body.metadata.resourceVersion : '';
      cont =
        typeof body.metadata?.continue === 'string' && body.metadata.continue !== ''
          ? body.metadata.continue
          : undefined;
    } while (cont);
    return { items, resourceVersion };
  }

  async watch(
    type: ResourceType,
    opts: CollectionOptions & { resourceVersion: string; timeoutSeconds?: number },
    onEvent: (event: WatchEvent) => void,
  ): Promise<WatchEnd> {
    const signal = opts.signal;
    signal?.throwIfAborted();
    const query: Record<string, string> = { allowWatchBookmarks: 'true' };
    if (opts.resourceVersion !== '') query.resourceVersion = opts.resourceVersion;
    if (opts.labelSelector) query.labelSelector = opts.labelSelector;
    if (opts.fieldSelector) query.fieldSelector = opts.fieldSelector;
    if (opts.timeoutSeconds !== undefined) query.timeoutSeconds = String(opts.timeoutSeconds);
    const path = resourcePath(type, opts.namespace);
    return new Promise<WatchEnd>((resolve, reject) => {
      let gone = false;
      let failure: KubeApiError | undefined;
      let settled = false;
      let controller: AbortController | undefined;
      // finish() before abort(): aborting makes client-node report an AbortError synchronously.
      const onAbort = (): void => {
        finish(signal?.reason);
        controller?.abort();
      };
      const finish = (err: unknown): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (signal?.aborted) reject(signal.reason);
        else if (err) reject(err);
        else resolve(gone ? 'gone' : 'closed');
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const handle = (phase: string, obj: unknown): void => {
        if (settled) return;
        if (phase === 'ERROR') {
          const status = obj as { code?: unknown };
          if (status.code === 410) gone = true;
          else failure = statusError(`watch ${type.plural}`, Number(status.code) || 500, obj);
          finish(failure);
          controller?.abort();
          return;
        }
        if (phase !== 'ADDED' && phase !== 'MODIFIED' && phase !== 'DELETED' && phase !== 'BOOKMARK') return;
        if (!obj || typeof obj !== 'object' || !(obj as KubeObject).metadata) return;
        try {
          onEvent({ type: phase, object: obj as KubeObject });
        } catch (err) {
          // client-node would swallow an exception thrown here; end the watch with it instead.
          finish(err);
          controller?.abort();
        }
      };
      const done = (err: unknown): void => {
        if (err && !signal?.aborted) {
          const status = (err as { statusCode?: unknown }).statusCode;
          if (status === 410) {
            gone = true;
            finish(undefined);
            return;
          }
          finish(
            typeof status === 'number'
              ? statusError(`watch ${type.plural}`, status, { message: (err as Error).message })
              : new KubeApiError(
                  'ERR_K8S_UNAVAILABLE',
                  `watch ${type.plural}: ${(err as Error).message}`,
                  0,
                  undefined,
                  {
                    cause: err,
                  },
                ),
          );
          return;
        }
        finish(undefined);
      };
      new Watch(this.#kc).watch(path, query, handle, done).then(
        (c) => {
          controller = c;
          if (settled) c.abort();
        },
        (err: unknown) => done(err),
      );
    });
  }

  async get(
    type: ResourceType,
    name: string,
    namespace?: string,
    signal?: AbortSignal,
  ): Promise<KubeObject | undefined> {
    try {
      return (await this.#request(
        'GET',
        resourcePath(type, namespace, name),
        {},
        undefined,
        signal,
      )) as KubeObject;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async create(type: ResourceType, obj: KubeObject, signal?: AbortSignal): Promise<KubeObject> {
    const body = { apiVersion: apiVersionOf(type), kind: type.kind, ...obj };
    return (await this.#request(
      'POST',
      resourcePath(type, obj.metadata.namespace),
      {},
      body,
      signal,
    )) as KubeObject;
  }

  async replace(type: ResourceType, obj: KubeObject, signal?: AbortSignal): Promise<KubeObject> {
    const body = { apiVersion: apiVersionOf(type), kind: type.kind, ...obj };
    const path = resourcePath(type, obj.metadata.namespace, obj.metadata.name);
    return (await this.#request('PUT', path, {}, body, signal)) as KubeObject;
  }

  async replaceStatus(type: ResourceType, obj: KubeObject, signal?: AbortSignal): Promise<KubeObject> {
    const body = { apiVersion: apiVersionOf(type), kind: type.kind, ...obj };
    const path = resourcePath(type, obj.metadata.namespace, obj.metadata.name, 'status');
    return (await this.#request('PUT', path, {}, body, signal)) as KubeObject;
  }

  async delete(
    type: ResourceType,
    name: string,
    namespace?: string,
    preconditions?: { resourceVersion?: string; uid?: string },
    signal?: AbortSignal,
  ): Promise<boolean> {
    const body = preconditions ? { apiVersion: 'v1', kind: 'DeleteOptions', preconditions } : undefined;
    try {
      await this.#request('DELETE', resourcePath(type, namespace, name), {}, body, signal);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async #request(
    method: string,
    path: string,
    query: Record<string, string>,
    body: unknown,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    const url = new URL(this.#server.href.replace(/\/$/, '') + path);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const opts: RequestOptions & { headers: Record<string, string> } = {
      method,
      headers: { accept: 'application/json' },
    };
    try {
      await this.#kc.applyToHTTPSOptions(opts);
    } catch (cause) {
      throw new KubeApiError(
        'ERR_K8S_CONFIG',
        `cannot apply Kubernetes credentials: ${(cause as Error).message}`,
        0,
        undefined,
        {
          cause,
        },
      );
    }
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8');
    if (payload) {
      opts.headers['content-type'] = 'application/json';
      opts.headers['content-length'] = String(payload.length);
    }
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    opts.signal = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const what = `${method} ${path}`;
    const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = send(url, opts, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
      });
      req.on('error', reject);
      req.end(payload);
    }).catch((err: unknown) => {
      if (signal?.aborted) throw signal.reason;
      const timedOut = timeout.aborted;
      throw new KubeApiError(
        'ERR_K8S_UNAVAILABLE',
        `${what}: ${timedOut ? `no answer within ${this.#timeoutMs} ms` : (err as Error).message}`,
        0,
        undefined,
        { cause: err },
      );
    });
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch (cause) {
      if (status >= 200 && status < 300) {
        throw new KubeApiError('ERR_K8S_RESPONSE', `${what}: the answer is not JSON`, status, undefined, {
          cause,
        });
      }
      parsed = { message: text.slice(0, 200) };
    }
    if (status < 200 || status >= 300) throw statusError(what, status, parsed);
    return parsed;
  }
}

function apiVersionOf(type: ResourceType): string {
  return type.group === '' ? type.version : `${type.group}/${type.version}`;
}
