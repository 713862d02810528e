import { type Clock, isAbort } from '../../platform/clock.js';
import { type K8sLogger, nullLogger } from './deps.js';
import { isNotFound, type KubeApi, type KubeObject, type ResourceType, type WatchEvent } from './kube-api.js';

/**
 * A list+watch cache of one resource type — the informer pattern, written small so every path is
 * ours to test against a real API server:
 *
 * - list, then watch from the list's resourceVersion (with bookmarks);
 * - when a watch ends normally (server timeout, connection closed) resume from the last
 *   resourceVersion seen, without relisting;
 * - when the resourceVersion has expired (HTTP 410 Gone, or an ERROR event with code 410 after
 *   etcd compaction) relist and replace the cache, reporting what changed meanwhile;
 * - on errors back off exponentially (injected clock) and retry, never giving up until aborted.
 *
 * Why not client-node's `makeInformer`: its ListWatch stops for good after a non-410 error (the
 * caller must restart it), has no backoff and no abort signal, and gives handlers no way to tell
 * a relist from a live event. Those are the cases a long-running broker meets.
 * @module
 */

/** What changed in the cache. `synced` follows every (re)list, after its add/update/delete events. */
export type ReflectorEvent =
  | { readonly type: 'added' | 'updated' | 'deleted'; readonly object: KubeObject }
  | { readonly type: 'synced' };

/** Test and metrics hooks. */
export interface ReflectorObserver {
  listed?(resourceVersion: string, count: number): void;
  watching?(resourceVersion: string): void;
  /** The resourceVersion expired (410); a relist follows. */
  expired?(resourceVersion: string): void;
  error?(err: unknown, retryInMs: number): void;
}

/** Options of {@link Reflector}. */
export interface ReflectorOptions {
  readonly api: KubeApi;
  readonly type: ResourceType;
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly clock: Clock;
  readonly logger?: K8sLogger;
  readonly observer?: ReflectorObserver;
  /**
   * Asks the server to end each watch after this many seconds (it then resumes from the last
   * resourceVersion). Default 300; the server's own limit is 30–60 minutes.
   */
  readonly watchTimeoutSeconds?: number;
  /** First retry delay after an error, ms (doubles up to `maxBackoffMs`). Default 500. */
  readonly initialBackoffMs?: number;
  /** Default 30 000. */
  readonly maxBackoffMs?: number;
  /**
   * Treat "resource type not found" (404 on list, e.g. a CRD that is not installed) as an empty,
   * synced collection and look again after `maxBackoffMs`. Default false (an error, retried).
   */
  readonly absentIsEmpty?: boolean;
}

function key(o: KubeObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/**
 * Keeps a cache of a collection up to date.
 *
 * @example
 * const r = new Reflector({ api, type: FEDERATION_PEERS, clock: systemClock });
 * r.subscribe((e) => console.log(e.type));
 * await r.run(signal);
 */
export class Reflector {
  readonly #o: ReflectorOptions;
  readonly #log: K8sLogger;
  readonly #cache = new Map<string, KubeObject>();
  readonly #listeners = new Set<(e: ReflectorEvent) => void>();
  #resourceVersion = '';
  #synced = false;
  #syncWaiters: (() => void)[] = [];

  constructor(opts: ReflectorOptions) {
    this.#o = opts;
    this.#log = opts.logger ?? nullLogger;
  }

  /** Objects currently known, in no particular order. */
  items(): KubeObject[] {
    return [...this.#cache.values()];
  }

  /** The object with this name (and namespace), if known. */
  get(name: string, namespace?: string): KubeObject | undefined {
    return this.#cache.get(namespace ? `${namespace}/${name}` : name);
  }

  /** True after the first complete list. */
  get synced(): boolean {
    return this.#synced;
  }

  /** The last resourceVersion seen (list, event or bookmark). */
  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  /** Calls `listener` synchronously for each change; returns the unsubscribe function. */
  subscribe(listener: (e: ReflectorEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves after the first complete list; rejects when `signal` aborts first. */
  waitForSync(signal: AbortSignal): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#syncWaiters.push(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  /** Lists and watches until `signal` aborts; resolves then. Never rejects for API errors. */
  async run(signal: AbortSignal): Promise<void> {
    const o = this.#o;
    const initial = o.initialBackoffMs ?? 500;
    const max = o.maxBackoffMs ?? 30_000;
    let backoff = initial;
    const coll = {
      ...(o.namespace !== undefined ? { namespace: o.namespace } : {}),
      ...(o.labelSelector !== undefined ? { labelSelector: o.labelSelector } : {}),
      signal,
    };
    while (!signal.aborted) {
      try {
        if (this.#resourceVersion === '') {
          let listed: { items: KubeObject[]; resourceVersion: string };
          try {
            listed = await o.api.list(o.type, coll);
          } catch (err) {
            if (!(o.absentIsEmpty && isNotFound(err))) throw err;
            this.#log.debug(`${o.type.plural}: resource type not served; treated as empty`);
            this.#replace([]);
            await o.clock.sleep(max, signal);
            continue;
          }
          this.#replace(listed.items);
          this.#resourceVersion = listed.resourceVersion;
          o.observer?.listed?.(listed.resourceVersion, listed.items.length);
        }
        o.observer?.watching?.(this.#resourceVersion);
        const end = await o.api.watch(
          o.type,
          { ...coll, resourceVersion: this.#resourceVersion, timeoutSeconds: o.watchTimeoutSeconds ?? 300 },
          (e) => this.#apply(e),
        );
        backoff = initial;
        if (end === 'gone') {
          this.#log.info(`${o.type.plural}: resourceVersion ${this.#resourceVersion} expired; relisting`);
          o.observer?.expired?.(this.#resourceVersion);
          this.#resourceVersion = '';
        }
      } catch (err) {
        if (signal.aborted || isAbort(err, signal)) break;
        o.observer?.error?.(err, backoff);
        this.#log.warn(`${o.type.plural}: list/watch failed; retrying`, {
          error: (err as Error).message,
          retryInMs: backoff,
        });
        try {
          await o.clock.sleep(backoff, signal);
        } catch {
          break;
        }
        backoff = Math.min(max, backoff * 2);
      }
    }
  }

  #apply(e: WatchEvent): void {
    const rv = e.object.metadata.resourceVersion;
    if (e.type === 'BOOKMARK') {
      if (rv) this.#resourceVersion = rv;
      return;
    }
    const k = key(e.object);
    if (e.type === 'DELETED') {
      const had = this.#cache.delete(k);
      if (rv) this.#resourceVersion = rv;
      if (had) this.#emit({ type: 'deleted', object: e.object });
      return;
    }
    const before = this.#cache.get(k);
    this.#cache.set(k, e.object);
    if (rv) this.#resourceVersion = rv;
    if (!before) this.#emit({ type: 'added', object: e.object });
    else if (before.metadata.resourceVersion !== rv) this.#emit({ type: 'updated', object: e.object });
  }

  /** Replaces the cache with a fresh list, emitting the differences, then `synced`. */
  #replace(items: KubeObject[]): void {
    const fresh = new Map(items.map((o) => [key(o), o] as const));
    for (const [k, old] of this.#cache) {
      if (!fresh.has(k)) {
        this.#cache.delete(k);
        this.#emit({ type: 'deleted', object: old });
      }
    }
    for (const [k, obj] of fresh) {
      const before = this.#cache.get(k);
      this.#cache.set(k, obj);
      if (!before) this.#emit({ type: 'added', object: obj });
      else if (before.metadata.resourceVersion !== obj.metadata.resourceVersion) {
        this.#emit({ type: 'updated', object: obj });
      }
    }
    this.#synced = true;
    this.#emit({ type: 'synced' });
    for (const w of this.#syncWaiters.splice(0)) w();
  }

  #emit(e: ReflectorEvent): void {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        this.#log.error(`${this.#o.type.plural}: a listener threw`, { error: (err as Error).message });
      }
    }
  }
}
