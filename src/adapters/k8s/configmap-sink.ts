import { createHash } from 'node:crypto';
import { marshalBundle, type TrustBundle } from '../../core/bundle/index.js';
import { renderOutput } from '../../core/bundle/outputs.js';
import { outputFileName } from '../../engine/publish/file-output.js';
import type { DesiredBundles, Sink, SinkFailure, SinkReport } from '../../engine/publish/sink.js';
import { K8sError } from '../../errors.js';
import type { Clock } from '../../platform/clock.js';
import { convergeLoop } from '../../platform/trigger.js';
import { toPem } from '../pki/pem.js';
import { type K8sLogger, nullLogger, Trigger } from './deps.js';
import { CONFIG_MAPS, isConflict, type KubeApi, type KubeObject, NAMESPACES } from './kube-api.js';
import { type LabelRequirement, matchesLabels, parseLabelSelector } from './label-selector.js';
import { jsonEqual } from './peer-status.js';
import { Reflector } from './reflector.js';
import { TRUST_DOMAIN_LABEL, trustDomainLabelValue } from './trust-domain-label.js';

/**
 * Distributes each federated trust domain's bundle as a ConfigMap — `spiffe-bundle-<td>` with
 * `bundle.pem`, `bundle.jwks` and `trust-domain` — into every namespace whose labels match a
 * selector, so workloads without a SPIFFE library can mount a peer's roots. One ConfigMap per
 * trust domain: domains are never merged into one root store (SPIFFE Federation §4.2).
 *
 * Level-triggered: each pass computes the desired ConfigMaps from the bundle feed and the matching
 * namespaces and converges the actual ones — create, update on rotation, delete on revocation or
 * when a namespace stops matching. While it runs, it also watches its own ConfigMaps in each
 * matching namespace (a namespaced watch: RBAC grants ConfigMaps per target namespace), so one
 * deleted or edited by hand is repaired at once, not at the next full pass; the events of its own
 * writes and deletes are recognised and start no pass.
 *
 * Only the broker's own ConfigMaps are touched: they carry the
 * `app.kubernetes.io/managed-by: spiffe-broker` label *and* the owner annotation; a foreign
 * ConfigMap with the same name is reported (`ERR_K8S_FOREIGN_OBJECT`), never modified or deleted.
 * Each also carries the `spiffe-broker.dev/trust-domain` label ({@link trustDomainLabelValue}), so
 * a trust-manager `Bundle` per trust domain can select it (`sources[].configMap.selector` + `key:
 * bundle.pem`, docs/kubernetes.md).
 *
 * Besides, one ConfigMap per matching namespace, {@link BUNDLE_MAP_CONFIG_MAP_NAME}, holds the
 * X.509 SPIFFE Bundle Map of every peer for proxyless gRPC (`grpc-bundle-map.json`, gRFC A87
 * `spiffe_trust_bundle_map_file`) and Envoy (`envoy-bundle-map.json`,
 * `SPIFFECertValidatorConfig.trust_bundles`), rendered as the file outputs render it; it exists
 * while at least one peer has an X.509 authority (an empty map would be refused by Envoy).
 * @module
 */

/** `app.kubernetes.io/managed-by`. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
/** The managed-by value of the broker's objects. */
export const MANAGED_BY_VALUE = 'spiffe-broker';
/** Marks bundle ConfigMaps among the broker's objects. */
export const BUNDLE_COMPONENT_LABEL = 'spiffe-broker.dev/component';
/** Which broker instance owns the object (two brokers in one cluster never fight). */
export const OWNER_ANNOTATION = 'spiffe-broker.dev/owner';
/** The full trust domain name (labels are too short for it). */
export const TRUST_DOMAIN_ANNOTATION = 'spiffe-broker.dev/trust-domain';
/** `spiffe_sequence` of the distributed bundle. */
const SEQUENCE_ANNOTATION = 'spiffe-broker.dev/sequence';
/** `spiffe-broker.dev/component` of per-trust-domain bundle ConfigMaps. */
const BUNDLE_COMPONENT = 'bundle';
/** `spiffe-broker.dev/component` of the Bundle Map ConfigMap. */
const BUNDLE_MAP_COMPONENT = 'bundle-map';
/** The trust domains in the Bundle Map ConfigMap, comma-separated, sorted. */
export const TRUST_DOMAINS_ANNOTATION = 'spiffe-broker.dev/trust-domains';
/**
 * Name of the Bundle Map ConfigMap in each matching namespace. Never a per-trust-domain name:
 * those all start with `spiffe-bundle-` ({@link bundleConfigMapName}).
 */
export const BUNDLE_MAP_CONFIG_MAP_NAME = 'spiffe-trust-bundle-map';

/** What the sink reads bundles from: `FederatedBundleStore` fits. */
export interface BundleFeed {
  /** The current bundles, one per trust domain. */
  bundles(): readonly TrustBundle[];
  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
}

/**
 * Hooks for tests and metrics. `trustDomain` is `*` for the Bundle Map ConfigMap
 * ({@link BUNDLE_MAP_CONFIG_MAP_NAME}).
 */
export interface ConfigMapSinkObserver {
  created?(namespace: string, name: string, trustDomain: string): void;
  updated?(namespace: string, name: string, trustDomain: string): void;
  deleted?(namespace: string, name: string, trustDomain: string): void;
  /** A ConfigMap the broker does not own has the name; left alone. */
  foreign?(namespace: string, name: string, error: K8sError): void;
  /** A pass failed for one namespace (e.g. RBAC does not cover it); the others went on. */
  error?(namespace: string, err: unknown): void;
  /** A pass finished. */
  reconciled?(): void;
  /** The broker's ConfigMaps in a matching namespace are watched: the watch's first list is in. */
  watching?(namespace: string): void;
}

/** Options of {@link ConfigMapSink}. */
export interface ConfigMapSinkOptions {
  readonly api: KubeApi;
  readonly clock: Clock;
  readonly logger?: K8sLogger;
  readonly feed: BundleFeed;
  /** Label selector of target namespaces, e.g. `spiffe-broker.dev/bundles=enabled`. Required. */
  readonly namespaceSelector: string;
  /** Identifies this broker in the owner annotation. Default `spiffe-broker`. */
  readonly owner?: string;
  /** Full pass at least this often (repairs edited or deleted ConfigMaps), ms. Default 300 000. */
  readonly resyncMs?: number;
  readonly observer?: ConfigMapSinkObserver;
  /** Watch timeout of the namespace reflector, seconds. */
  readonly watchTimeoutSeconds?: number;
}

/** Longest name kept readable before a hash suffix is used (ConfigMap names: ≤ 253). */
const MAX_READABLE = 200;

/**
 * `spiffe-bundle-<trust domain with . and _ as ->`. Trust domain names allow characters and lengths
 * an object name does not, and `a.b` and `a-b` would collide, so such names get a hash suffix; the
 * sink also suffixes every name of a colliding pair.
 */
export function bundleConfigMapName(trustDomain: string, forceHash = false): string {
  const readable = trustDomain.replace(/[._]/g, '-');
  const clean = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(readable) && readable.length <= MAX_READABLE;
  if (clean && !forceHash) return `spiffe-bundle-${readable}`;
  const hash = createHash('sha256').update(trustDomain).digest('hex').slice(0, 10);
  const base = readable
    .replace(/^-+|-+$/g, '')
    .slice(0, MAX_READABLE)
    .replace(/-+$/, '');
  return `spiffe-bundle-${base === '' ? '' : `${base}-`}${hash}`;
}

/** The ConfigMap data for a bundle: PEM roots, the SPIFFE bundle (JWKS) document, the trust domain. */
export function bundleConfigMapData(bundle: TrustBundle): Record<string, string> {
  return {
    'bundle.pem': bundle.x509Authorities.map((a) => toPem(a.der)).join(''),
    'bundle.jwks': `${marshalBundle(bundle, { indent: 2 })}\n`,
    'trust-domain': bundle.trustDomain.name,
  };
}

/**
 * The Bundle Map ConfigMap's data: the X.509 SPIFFE Bundle Map of `bundles` under the file output
 * names (`grpc-bundle-map.json`, `envoy-bundle-map.json`; the same bytes, core/bundle/outputs), and
 * the trust domains it holds; undefined when no bundle has an X.509 authority a consumer takes.
 */
export function bundleMapConfigMapData(
  bundles: readonly TrustBundle[],
): { readonly data: Record<string, string>; readonly trustDomains: readonly string[] } | undefined {
  const map = renderOutput('grpc-bundle-map', { bundles });
  if (map.trustDomains.length === 0) return undefined;
  return {
    data: {
      [outputFileName('grpc-bundle-map')]: map.text,
      [outputFileName('envoy-bundle-map')]: map.text,
    },
    trustDomains: map.trustDomains,
  };
}

interface Desired {
  readonly component: typeof BUNDLE_COMPONENT | typeof BUNDLE_MAP_COMPONENT;
  readonly name: string;
  /** The bundle's trust domain; `*` for the Bundle Map. */
  readonly trustDomain: string;
  readonly data: Record<string, string>;
  /** Per trust domain: `spiffe_sequence`; for the Bundle Map: its trust domains. */
  readonly annotations: Record<string, string>;
}

/**
 * Keeps bundle ConfigMaps in matching namespaces. Run it only on the leader, and start it after the
 * bundle feed holds the persisted bundles (an empty feed means "no peers": their ConfigMaps go).
 *
 * @example
 * const sink = new ConfigMapSink({ api, clock: systemClock, feed: store,
 *   namespaceSelector: 'spiffe-broker.dev/bundles=enabled' });
 * await sink.run(signal);
 */
export class ConfigMapSink implements Sink {
  /** For status and logs ({@link Sink.name}). */
  readonly name = 'configmaps';
  /** What the pass under way wrote and removed, for its {@link SinkReport}. */
  #pending: { written: Set<string>; removed: Set<string> } | undefined;
  /** The tail of the serialised passes. */
  #passes: Promise<unknown> = Promise.resolve();
  /** run() is watching the namespaces. */
  #running = false;
  readonly #o: ConfigMapSinkOptions;
  readonly #log: K8sLogger;
  readonly #selector: LabelRequirement[];
  readonly #owner: string;
  readonly #namespaces: Reflector;
  readonly #trigger = new Trigger();
  /** Namespaces where the broker's ConfigMaps were seen or written (swept even when not matching). */
  readonly #touched = new Set<string>();
  readonly #reportedForeign = new Set<string>();
  #sweptAll = false;
  /** While run() runs: one watch of the broker's ConfigMaps per matching namespace. */
  #watches: Map<string, AbortController> | undefined;
  /** The ConfigMap watches still running (awaited when run() ends). */
  readonly #watchDone = new Set<Promise<void>>();
  /**
   * `<ns>/<name>` → the data of the broker's own write whose watch event is still due. Noted
   * before the call: the event may come before the API's answer.
   */
  readonly #ownWrites = new Map<string, Record<string, string>>();
  /** `<ns>/<name>` of the broker's own deletes whose watch event is still due. */
  readonly #ownDeletes = new Set<string>();

  constructor(opts: ConfigMapSinkOptions) {
    this.#o = opts;
    this.#log = opts.logger ?? nullLogger;
    this.#selector = parseLabelSelector(opts.namespaceSelector);
    if (this.#selector.length === 0) {
      throw new K8sError('ERR_K8S_CONFIG', 'the bundle ConfigMap namespace selector must not be empty');
    }
    this.#owner = opts.owner ?? 'spiffe-broker';
    this.#namespaces = new Reflector({
      api: opts.api,
      type: NAMESPACES,
      clock: opts.clock,
      logger: this.#log,
      ...(opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: opts.watchTimeoutSeconds } : {}),
    });
  }

  /** Converges until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const fire = (): void => this.#trigger.fire();
    const unsubs = [this.#o.feed.subscribe(fire), this.#namespaces.subscribe(fire)];
    const inner = new AbortController();
    const onAbort = (): void => inner.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const reflector = this.#namespaces.run(inner.signal);
    this.#running = true;
    this.#watches = new Map();
    const resync = this.#o.resyncMs ?? 300_000;
    let lastFull = Number.NEGATIVE_INFINITY;
    try {
      await this.#namespaces.waitForSync(signal);
      // A failed pass (conflict, RBAC, API) is tried again soon, or earlier on a change.
      await convergeLoop(this.#trigger, this.#o.clock, resync, signal, async () => {
        const full = this.#o.clock.now() - lastFull >= resync;
        const ok = await this.reconcile(signal, full);
        if (full) lastFull = this.#o.clock.now();
        return ok;
      });
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#running = false;
      inner.abort(signal.reason);
      for (const u of unsubs) u();
      for (const ac of this.#watches.values()) ac.abort();
      this.#watches = undefined;
      await Promise.all([reflector, ...this.#watchDone]);
      this.#ownWrites.clear();
      this.#ownDeletes.clear();
    }
  }

  /** The label selector of the broker's bundle ConfigMaps (both components). */
  static readonly #OURS_SELECTOR =
    `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${BUNDLE_COMPONENT_LABEL} in (${BUNDLE_COMPONENT},${BUNDLE_MAP_COMPONENT})`;

  /**
   * While run() runs: stops the watches of namespaces no longer `matching`, starts one for each
   * namespace in `converged` (a matching namespace whose pass succeeded) not yet watched.
   */
  #followNamespaces(matching: ReadonlySet<string>, converged: ReadonlySet<string>): void {
    const watches = this.#watches;
    if (!watches) return;
    for (const [ns, ac] of watches) {
      if (matching.has(ns)) continue;
      ac.abort();
      watches.delete(ns);
    }
    for (const ns of converged) {
      if (watches.has(ns)) continue;
      const ac = new AbortController();
      watches.set(ns, ac);
      const reflector = new Reflector({
        api: this.#o.api,
        type: CONFIG_MAPS,
        namespace: ns,
        labelSelector: ConfigMapSink.#OURS_SELECTOR,
        clock: this.#o.clock,
        logger: this.#log,
        ...(this.#o.watchTimeoutSeconds !== undefined
          ? { watchTimeoutSeconds: this.#o.watchTimeoutSeconds }
          : {}),
      });
      let synced = false;
      reflector.subscribe((e) => {
        if (e.type === 'synced') {
          if (!synced) this.#o.observer?.watching?.(ns);
          synced = true;
          return;
        }
        // The first list's objects are what the pass already saw.
        if (!synced || !this.#isOurs(e.object, componentOf(e.object))) return;
        if (this.#expected(e.type, e.object)) return;
        this.#log.info('bundle ConfigMap changed by someone else; converging', {
          namespace: ns,
          name: e.object.metadata.name,
          event: e.type,
        });
        this.#trigger.fire();
      });
      const done = reflector.run(ac.signal);
      this.#watchDone.add(done);
      void done.finally(() => this.#watchDone.delete(done));
    }
  }

  /** Whether a watch event is the echo of the broker's own write or delete (consumed if so). */
  #expected(type: 'added' | 'updated' | 'deleted', cm: KubeObject): boolean {
    const at = `${cm.metadata.namespace}/${cm.metadata.name}`;
    if (type === 'deleted') return this.#ownDeletes.delete(at);
    const wrote = this.#ownWrites.get(at);
    if (wrote === undefined || !jsonEqual(cm.data ?? {}, wrote)) return false;
    this.#ownWrites.delete(at);
    return true;
  }

  /** Notes a write about to be made, until its watch event comes (bounded). */
  #writing(ns: string, name: string, data: Record<string, string>): void {
    if (this.#watches === undefined) return;
    if (this.#ownWrites.size >= MAX_PENDING_ECHOES) this.#ownWrites.clear();
    this.#ownWrites.set(`${ns}/${name}`, data);
  }

  /**
   * One pass. `sweepAll` also lists the broker's ConfigMaps in every non-matching namespace (where
   * RBAC allows), catching namespaces that stopped matching while the broker was down. Resolves
   * true when every namespace converged.
   */
  async reconcile(signal: AbortSignal, sweepAll = false): Promise<boolean> {
    return (await this.#pass(this.#o.feed.bundles(), signal, sweepAll)).ok;
  }

  /**
   * {@link Sink.apply}: one pass with `want`'s bundles as the desired set (every matching
   * namespace gets one ConfigMap per trust domain; the broker's other ConfigMaps go). `retained`
   * needs nothing here: a trust domain without a bundle has no ConfigMap to keep.
   */
  async apply(want: DesiredBundles, signal: AbortSignal = new AbortController().signal): Promise<SinkReport> {
    const bundles = [...want.bundles.values()];
    if (this.#running) return this.#pass(bundles, signal, false);
    // Outside run(): watch the namespaces for this one pass.
    const inner = new AbortController();
    const reflector = this.#namespaces.run(inner.signal);
    try {
      await this.#namespaces.waitForSync(signal);
      return await this.#pass(bundles, signal, false);
    } finally {
      inner.abort();
      await reflector;
    }
  }

  /** One pass at a time (the run loop's and apply()'s never interleave). */
  #pass(bundles: readonly TrustBundle[], signal: AbortSignal, sweepAll: boolean): Promise<SinkReport> {
    const next = this.#passes.then(() => this.#passNow(bundles, signal, sweepAll));
    this.#passes = next.catch(() => undefined);
    return next;
  }

  async #passNow(
    bundles: readonly TrustBundle[],
    signal: AbortSignal,
    sweepAll: boolean,
  ): Promise<SinkReport> {
    const written = new Set<string>();
    const removed = new Set<string>();
    const failed: SinkFailure[] = [];
    this.#pending = { written, removed };
    try {
      const ok = await this.#reconcileAll(bundles, signal, sweepAll, failed);
      return { ok, written: [...written].sort(), removed: [...removed].sort(), failed };
    } finally {
      this.#pending = undefined;
    }
  }

  async #reconcileAll(
    bundles: readonly TrustBundle[],
    signal: AbortSignal,
    sweepAll: boolean,
    failed: SinkFailure[],
  ): Promise<boolean> {
    const desired = this.#desired(bundles);
    const matching = new Set<string>();
    const all: string[] = [];
    for (const ns of this.#namespaces.items()) {
      all.push(ns.metadata.name);
      if (!ns.metadata.deletionTimestamp && matchesLabels(this.#selector, ns.metadata.labels)) {
        matching.add(ns.metadata.name);
      }
    }
    const visit = new Set<string>([...matching, ...this.#touched]);
    const sweeping = sweepAll || !this.#sweptAll;
    if (sweeping) for (const n of all) visit.add(n);
    let ok = true;
    // Watched: the matching namespaces that converged (one RBAC does not cover would only fail).
    const watchable = new Set<string>();
    for (const ns of [...visit].sort()) {
      signal.throwIfAborted();
      try {
        await this.#reconcileNamespace(ns, matching.has(ns) ? desired : [], signal);
        if (matching.has(ns)) watchable.add(ns);
      } catch (err) {
        if (signal.aborted) throw err;
        const quiet = !matching.has(ns) && !this.#touched.has(ns);
        // A sweep of a namespace RBAC does not cover is expected; only targets count as failures.
        if (quiet) continue;
        ok = false;
        failed.push({
          trustDomain: '*',
          code: err instanceof K8sError ? err.code : 'ERR_K8S_RESPONSE',
          message: `namespace ${ns}: ${(err as Error).message}`,
        });
        this.#o.observer?.error?.(ns, err);
        this.#log.warn('bundle ConfigMaps: namespace failed', {
          namespace: ns,
          error: (err as Error).message,
        });
      }
    }
    if (sweeping) this.#sweptAll = true;
    this.#followNamespaces(matching, watchable);
    this.#o.observer?.reconciled?.();
    return ok;
  }

  #desired(bundles: readonly TrustBundle[]): Desired[] {
    const names = new Map<string, number>();
    for (const b of bundles) {
      const n = bundleConfigMapName(b.trustDomain.name);
      names.set(n, (names.get(n) ?? 0) + 1);
    }
    const out: Desired[] = bundles.map((b) => {
      const td = b.trustDomain.name;
      const plain = bundleConfigMapName(td);
      return {
        component: BUNDLE_COMPONENT,
        name: (names.get(plain) ?? 0) > 1 ? bundleConfigMapName(td, true) : plain,
        trustDomain: td,
        data: bundleConfigMapData(b),
        annotations: { [TRUST_DOMAIN_ANNOTATION]: td, [SEQUENCE_ANNOTATION]: b.sequence.toString() },
      };
    });
    const map = bundleMapConfigMapData(bundles);
    if (map) {
      out.push({
        component: BUNDLE_MAP_COMPONENT,
        name: BUNDLE_MAP_CONFIG_MAP_NAME,
        trustDomain: '*',
        data: map.data,
        annotations: { [TRUST_DOMAINS_ANNOTATION]: map.trustDomains.join(',') },
      });
    }
    return out;
  }

  #isOurs(cm: KubeObject, component: string = BUNDLE_COMPONENT): boolean {
    return (
      cm.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE &&
      cm.metadata.labels?.[BUNDLE_COMPONENT_LABEL] === component &&
      cm.metadata.annotations?.[OWNER_ANNOTATION] === this.#owner &&
      // The Bundle Map has one name; a per-trust-domain ConfigMap never has it.
      (cm.metadata.name === BUNDLE_MAP_CONFIG_MAP_NAME) === (component === BUNDLE_MAP_COMPONENT)
    );
  }

  #build(ns: string, d: Desired, resourceVersion?: string): KubeObject {
    return {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: d.name,
        namespace: ns,
        ...(resourceVersion ? { resourceVersion } : {}),
        labels:
          d.component === BUNDLE_COMPONENT
            ? {
                [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
                [BUNDLE_COMPONENT_LABEL]: BUNDLE_COMPONENT,
                'app.kubernetes.io/name': 'spiffe-bundle',
                // One trust domain per selector: a trust-manager Bundle source, `kubectl get -l`.
                [TRUST_DOMAIN_LABEL]: trustDomainLabelValue(d.trustDomain),
              }
            : {
                [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
                [BUNDLE_COMPONENT_LABEL]: BUNDLE_MAP_COMPONENT,
                'app.kubernetes.io/name': 'spiffe-bundle-map',
              },
        annotations: { [OWNER_ANNOTATION]: this.#owner, ...d.annotations },
      },
      data: d.data,
    };
  }

  async #reconcileNamespace(ns: string, desired: readonly Desired[], signal: AbortSignal): Promise<void> {
    const { items } = await this.#o.api.list(CONFIG_MAPS, {
      namespace: ns,
      labelSelector: ConfigMapSink.#OURS_SELECTOR,
      signal,
    });
    const ours = new Map(
      items
        .filter((cm) => this.#isOurs(cm) || this.#isOurs(cm, BUNDLE_MAP_COMPONENT))
        .map((cm) => [cm.metadata.name, cm] as const),
    );
    if (ours.size > 0 || desired.length > 0) this.#touched.add(ns);
    let firstError: unknown;
    const wanted = new Set(desired.map((d) => d.name));
    for (const d of desired) {
      try {
        await this.#ensure(ns, d, ours.get(d.name), signal);
      } catch (err) {
        if (signal.aborted) throw err;
        firstError ??= err;
      }
    }
    for (const [name, cm] of ours) {
      if (wanted.has(name)) continue;
      const isMap = name === BUNDLE_MAP_CONFIG_MAP_NAME;
      const td = isMap ? '*' : (cm.metadata.annotations?.[TRUST_DOMAIN_ANNOTATION] ?? '');
      try {
        // Preconditions: never delete a version we did not look at (someone may have adopted it).
        const rv = cm.metadata.resourceVersion;
        if (this.#watches !== undefined) {
          if (this.#ownDeletes.size >= MAX_PENDING_ECHOES) this.#ownDeletes.clear();
          this.#ownDeletes.add(`${ns}/${name}`);
        }
        const gone = await this.#o.api.delete(
          CONFIG_MAPS,
          name,
          ns,
          rv ? { resourceVersion: rv } : undefined,
          signal,
        );
        if (gone) {
          this.#log.info('bundle ConfigMap deleted', { namespace: ns, name, trustDomain: td });
          if (!isMap) this.#pending?.removed.add(td);
          this.#o.observer?.deleted?.(ns, name, td);
        }
      } catch (err) {
        if (signal.aborted) throw err;
        firstError ??= err;
      }
    }
    if (desired.length === 0 && ours.size === 0) this.#touched.delete(ns);
    if (firstError !== undefined) throw firstError;
  }

  async #ensure(ns: string, d: Desired, current: KubeObject | undefined, signal: AbortSignal): Promise<void> {
    if (current) {
      const want = this.#build(ns, d);
      const same =
        jsonEqual(current.data ?? {}, d.data) &&
        jsonEqual(pick(current.metadata.labels, want.metadata.labels), want.metadata.labels) &&
        jsonEqual(pick(current.metadata.annotations, want.metadata.annotations), want.metadata.annotations);
      if (same) return;
      const next: KubeObject = {
        ...current,
        metadata: {
          ...current.metadata,
          labels: { ...current.metadata.labels, ...want.metadata.labels },
          annotations: { ...current.metadata.annotations, ...want.metadata.annotations },
        },
        data: d.data,
      };
      delete next.binaryData;
      this.#writing(ns, d.name, d.data);
      await this.#o.api.replace(CONFIG_MAPS, next, signal);
      this.#log.info('bundle ConfigMap updated', { namespace: ns, name: d.name, trustDomain: d.trustDomain });
      if (d.component === BUNDLE_COMPONENT) this.#pending?.written.add(d.trustDomain);
      this.#o.observer?.updated?.(ns, d.name, d.trustDomain);
      return;
    }
    try {
      this.#writing(ns, d.name, d.data);
      await this.#o.api.create(CONFIG_MAPS, this.#build(ns, d), signal);
      this.#reportedForeign.delete(`${ns}/${d.name}`);
      this.#log.info('bundle ConfigMap created', { namespace: ns, name: d.name, trustDomain: d.trustDomain });
      if (d.component === BUNDLE_COMPONENT) this.#pending?.written.add(d.trustDomain);
      this.#o.observer?.created?.(ns, d.name, d.trustDomain);
    } catch (err) {
      if (!isConflict(err)) throw err;
      const existing = await this.#o.api.get(CONFIG_MAPS, d.name, ns, signal);
      if (existing && this.#isOurs(existing, d.component)) {
        await this.#ensure(ns, d, existing, signal);
        return;
      }
      const key = `${ns}/${d.name}`;
      const foreign = new K8sError(
        'ERR_K8S_FOREIGN_OBJECT',
        `ConfigMap ${key} exists and is not managed by this broker (owner ${this.#owner}); ${d.component === BUNDLE_COMPONENT ? `the bundle of ${d.trustDomain}` : 'the SPIFFE Bundle Map'} is not written there`,
      );
      if (!this.#reportedForeign.has(key)) {
        this.#reportedForeign.add(key);
        this.#log.warn(foreign.message, { code: foreign.code });
      }
      this.#o.observer?.foreign?.(ns, d.name, foreign);
    }
  }
}

/**
 * Echoes of the broker's own writes and deletes remembered at most (an echo that never comes —
 * e.g. the watch was down — must not pile up); past it they are forgotten, which at worst starts
 * one pass that finds nothing to do.
 */
const MAX_PENDING_ECHOES = 10_000;

function componentOf(cm: KubeObject): typeof BUNDLE_COMPONENT | typeof BUNDLE_MAP_COMPONENT {
  return cm.metadata.name === BUNDLE_MAP_CONFIG_MAP_NAME ? BUNDLE_MAP_COMPONENT : BUNDLE_COMPONENT;
}

/** The entries of `have` whose keys are in `want` (to compare only what the broker sets). */
function pick(
  have: Record<string, string> | undefined,
  want: Record<string, string> | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(want ?? {})) if (have?.[k] !== undefined) out[k] = have[k];
  return out;
}
