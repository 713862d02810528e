import { createHash } from 'node:crypto';
import type { TrustBundle } from '../../core/bundle/index.js';
import type { DesiredBundles, Sink, SinkFailure, SinkReport } from '../../engine/publish/sink.js';
import { K8sError } from '../../errors.js';
import type { Clock } from '../../platform/clock.js';
import { convergeLoop } from '../../platform/trigger.js';
import { toPem } from '../pki/pem.js';
import type { BundleFeed } from './configmap-sink.js';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_ANNOTATION } from './configmap-sink.js';
import { type K8sLogger, nullLogger, Trigger } from './deps.js';
import { CLUSTER_TRUST_BUNDLES, isConflict, isNotFound, type KubeApi, type KubeObject } from './kube-api.js';
import { jsonEqual } from './peer-status.js';
import { TRUST_DOMAIN_LABEL, trustDomainLabelValue } from './trust-domain-label.js';

/**
 * Publishes each federated trust domain's X.509 authorities as a Kubernetes ClusterTrustBundle
 * (`certificates.k8s.io/v1beta1`, served by kube-apiserver ≥ 1.33 with the `ClusterTrustBundle`
 * feature gate and `--runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true`).
 *
 * One object per trust domain, all linked to one signer name (default
 * `spiffe-broker.dev/federation`) and labelled with the trust domain, so a pod's projected volume
 * `clusterTrustBundle: {signerName, labelSelector: {matchLabels: {spiffe-broker.dev/trust-domain:
 * <td>}}}` receives exactly that domain's roots — trust domains are never merged (SPIFFE
 * Federation §4.2). The API's rules, as kube-apiserver 1.36 enforces them:
 *
 * - a signer-linked object's name must start with the signer name with `/` replaced by `:`, then
 *   `:` (`ValidateClusterTrustBundleName`); the rest must be a DNS subdomain — here the trust
 *   domain itself when it is one, else a readable form plus a hash ({@link clusterTrustBundleName});
 * - creating or updating one needs the `attest` verb on `certificates.k8s.io` `signers` with
 *   the signer name as resourceName (admission plugin `ClusterTrustBundleAttest`; deploy/base/rbac.yaml);
 * - `spec.signerName` is immutable; `spec.trustBundle` must hold at least one PEM `CERTIFICATE`
 *   block, each a CA certificate (basic constraints, CA bit), no duplicates, no PEM headers,
 *   at most 1 MiB (a larger one is refused by the API and reported as that trust domain's
 *   failure). A trust domain whose bundle has no X.509 authority therefore gets **no object** (an
 *   existing one is deleted) and the observer's `skipped` says why.
 *
 * Level-triggered like {@link ConfigMapSink}: each pass lists the broker's objects (by the
 * managed-by and component labels) and converges them — create, update on rotation, delete on
 * revocation. Only objects carrying this broker's owner annotation are touched; a foreign object
 * with the name is reported (`ERR_K8S_FOREIGN_OBJECT`) and left alone. Objects of trust domains in
 * {@link DesiredBundles.retained} are kept as they are.
 * @module
 */

/** The default signer name of the broker's ClusterTrustBundles. */
export const DEFAULT_CTB_SIGNER_NAME = 'spiffe-broker.dev/federation';
/** `spiffe-broker.dev/component` value marking the broker's ClusterTrustBundles. */
export const CTB_COMPONENT = 'cluster-trust-bundle';
/** Same key as the ConfigMaps' component label. */
const COMPONENT_LABEL = 'spiffe-broker.dev/component';
const TRUST_DOMAIN_ANNOTATION = TRUST_DOMAIN_LABEL;
const SEQUENCE_ANNOTATION = 'spiffe-broker.dev/sequence';

/** `IsDNS1123Label`. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** `IsDNS1123Subdomain` (the pattern; length checked apart). */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Longest DNS subdomain. */
const MAX_SUBDOMAIN = 253;
/** Longest readable part of a hashed name suffix. */
const MAX_READABLE = 200;

/**
 * Why `signerName` cannot be a ClusterTrustBundle signer name, or `undefined` when it can. The
 * API's rules (`ValidateSignerName`): `<domain>/<path>`, exactly one `/`; the domain ≤ 253
 * characters, at least two DNS labels; each `.`-separated part of the path a DNS subdomain; the
 * whole ≤ 571. Signers under `kubernetes.io` are the Kubernetes project's own and refused here.
 */
export function signerNameProblem(signerName: string): string | undefined {
  const parts = signerName.split('/');
  if (parts.length !== 2) return 'must be a domain and a path, e.g. "spiffe-broker.dev/federation"';
  const [domain, path] = parts as [string, string];
  if (domain.length > MAX_SUBDOMAIN) return `its domain is longer than ${MAX_SUBDOMAIN} characters`;
  const labels = domain.split('.');
  if (labels.length < 2) return 'its domain must have at least two dot-separated labels';
  if (!labels.every((l) => l.length <= 63 && DNS_LABEL.test(l))) {
    return 'its domain must be lower-case DNS labels (a-z, 0-9, -)';
  }
  if (!path.split('.').every((p) => p.length <= MAX_SUBDOMAIN && DNS_SUBDOMAIN.test(p))) {
    return 'its path must be lower-case DNS labels (a-z, 0-9, -) separated by dots';
  }
  if (signerName.length > 571) return 'is longer than 571 characters';
  if (domain === 'kubernetes.io' || domain.endsWith('.kubernetes.io')) {
    return 'kubernetes.io signers belong to the Kubernetes project';
  }
  return undefined;
}

/**
 * `<signer name, / as :>:<trust domain>` — e.g. `spiffe-broker.dev:federation:partner.example.org`.
 * The API requires the prefix for signer-linked objects and a DNS subdomain after it; a trust
 * domain that is not one (an `_`, an empty label) or is too long gets its readable part plus the
 * first 10 hex digits of its SHA-256 instead, which cannot collide with a plain name (those keep
 * their dots).
 */
export function clusterTrustBundleName(signerName: string, trustDomain: string): string {
  const prefix = `${signerName.replace(/\//g, ':')}:`;
  if (trustDomain.length <= MAX_SUBDOMAIN && DNS_SUBDOMAIN.test(trustDomain)) return prefix + trustDomain;
  const hash = createHash('sha256').update(trustDomain).digest('hex').slice(0, 10);
  const readable = trustDomain
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, MAX_READABLE)
    .replace(/^-+|-+$/g, '');
  return `${prefix}${readable === '' ? '' : `${readable}-`}${hash}`;
}

/**
 * The `spec.trustBundle` of `bundle`: its X.509 authorities as PEM, in bundle order; `''` when it
 * has none. The API's other rules hold by construction: a {@link TrustBundle} holds only distinct
 * CA certificates (`ERR_BUNDLE_X5C_NOT_CA`, `ERR_BUNDLE_X509_DUPLICATE`), and `toPem` writes no
 * headers.
 */
export function clusterTrustBundlePem(bundle: TrustBundle): string {
  return bundle.x509Authorities.map((a) => toPem(a.der)).join('');
}

/** Hooks for tests and metrics. */
export interface ClusterTrustBundleSinkObserver {
  created?(name: string, trustDomain: string): void;
  updated?(name: string, trustDomain: string): void;
  deleted?(name: string, trustDomain: string): void;
  /** A trust domain gets no object: its bundle has no X.509 CA authority. */
  skipped?(trustDomain: string, reason: string): void;
  /** An object the broker does not own has the name; left alone. */
  foreign?(name: string, error: K8sError): void;
  /** Writing one trust domain's object failed (RBAC, API, validation); the others went on. */
  error?(trustDomain: string, err: unknown): void;
  /** A pass finished. */
  reconciled?(): void;
}

/** Options of {@link ClusterTrustBundleSink}. */
export interface ClusterTrustBundleSinkOptions {
  readonly api: KubeApi;
  readonly clock: Clock;
  readonly logger?: K8sLogger;
  /**
   * The bundles {@link ClusterTrustBundleSink.run} publishes (`FederatedBundleStore` fits), unless
   * `run` is given one. `apply` does not read it.
   */
  readonly feed?: BundleFeed;
  /** Signer name of every object. Default {@link DEFAULT_CTB_SIGNER_NAME}. */
  readonly signerName?: string;
  /** Identifies this broker in the owner annotation. Default `spiffe-broker`. */
  readonly owner?: string;
  /** Full pass at least this often (repairs edited or deleted objects), ms. Default 300 000. */
  readonly resyncMs?: number;
  readonly observer?: ClusterTrustBundleSinkObserver;
  /** Hears every pass's report (logs, metrics). */
  readonly onReport?: (report: SinkReport) => void;
}

/** The sink's state, for `/v1/status`. */
export interface ClusterTrustBundleStatus {
  readonly signerName: string;
  /** When a pass last created, updated or deleted an object (RFC 3339), or null when never in this run. */
  readonly lastWrite: string | null;
  /** The last pass's first failure, or null when it converged. */
  readonly lastError: { readonly code: string; readonly message: string; readonly at: string } | null;
  /** Trust domains with an object now, as far as the last pass knows. */
  readonly trustDomains: readonly string[];
  /** Trust domains left without an object, and why. */
  readonly omitted: readonly { readonly trustDomain: string; readonly reason: string }[];
}

interface Desired {
  readonly name: string;
  readonly trustDomain: string;
  readonly pem: string;
  readonly sequence: string;
}

/**
 * Keeps one ClusterTrustBundle per federated trust domain. Run it only on the leader, after the
 * feed holds the persisted bundles (an empty feed means "no peers": their objects go).
 *
 * @example
 * const sink = new ClusterTrustBundleSink({ api, clock: systemClock, feed: store });
 * await sink.run(signal);
 */
export class ClusterTrustBundleSink implements Sink {
  /** For status and logs ({@link Sink.name}). */
  readonly name = 'cluster-trust-bundles';
  readonly #o: ClusterTrustBundleSinkOptions;
  readonly #log: K8sLogger;
  readonly #signer: string;
  readonly #owner: string;
  readonly #trigger = new Trigger();
  /** Skipped trust domains (and the sequence) already logged, so logs say it once. */
  readonly #reported = new Set<string>();
  #status: Omit<ClusterTrustBundleStatus, 'signerName'> = {
    lastWrite: null,
    lastError: null,
    trustDomains: [],
    omitted: [],
  };

  constructor(opts: ClusterTrustBundleSinkOptions) {
    this.#o = opts;
    this.#log = opts.logger ?? nullLogger;
    this.#signer = opts.signerName ?? DEFAULT_CTB_SIGNER_NAME;
    const problem = signerNameProblem(this.#signer);
    if (problem) {
      throw new K8sError('ERR_K8S_CONFIG', `ClusterTrustBundle signer name ${this.#signer}: ${problem}`);
    }
    this.#owner = opts.owner ?? 'spiffe-broker';
  }

  /** The signer name of the objects (for projected volumes' `clusterTrustBundle.signerName`). */
  get signerName(): string {
    return this.#signer;
  }

  /**
   * Converges on every change of `feed` (default the options' feed) and every `resyncMs` until
   * `signal` aborts.
   */
  async run(signal: AbortSignal, feed: BundleFeed | undefined = this.#o.feed): Promise<void> {
    if (!feed) throw new TypeError('ClusterTrustBundleSink.run needs a bundle feed');
    const unsubscribe = feed.subscribe(() => this.#trigger.fire());
    const resync = this.#o.resyncMs ?? 300_000;
    try {
      // A failed pass (conflict, RBAC, API) is tried again soon, or earlier on a change.
      await convergeLoop(this.#trigger, this.#o.clock, resync, signal, async () => {
        const bundles = new Map(feed.bundles().map((b) => [b.trustDomain.name, b] as const));
        return (await this.apply({ bundles, retained: new Set() }, signal)).ok;
      });
    } finally {
      unsubscribe();
    }
  }

  /**
   * {@link Sink.apply}: one pass with `want`'s bundles as the desired set. The broker's objects of
   * trust domains in `want.retained` are kept as they are; its other objects not wanted go.
   * Rejects only when `signal` aborts.
   */
  async apply(want: DesiredBundles, signal: AbortSignal = new AbortController().signal): Promise<SinkReport> {
    const omitted: { trustDomain: string; reason: string }[] = [];
    const present = new Set<string>();
    let report: SinkReport;
    try {
      report = await this.#pass(want, signal, omitted, present);
    } finally {
      this.#o.observer?.reconciled?.();
    }
    const at = new Date(this.#o.clock.now()).toISOString();
    const first = report.failed[0];
    this.#status = {
      lastWrite: report.written.length + report.removed.length > 0 ? at : this.#status.lastWrite,
      lastError: first ? { code: first.code, message: first.message, at } : null,
      // Unknown when the list failed: keep what the last pass knew.
      trustDomains: report.failed.some((f) => f.trustDomain === '*')
        ? this.#status.trustDomains
        : [...present].sort(),
      omitted,
    };
    this.#o.onReport?.(report);
    return report;
  }

  /** The state after the last pass (`/v1/status`). */
  status(): ClusterTrustBundleStatus {
    return { signerName: this.#signer, ...this.#status };
  }

  async #pass(
    want: DesiredBundles,
    signal: AbortSignal,
    omitted: { trustDomain: string; reason: string }[],
    present: Set<string>,
  ): Promise<SinkReport> {
    const written = new Set<string>();
    const removed = new Set<string>();
    const failed: SinkFailure[] = [];
    const fail = (trustDomain: string, err: unknown): void => {
      failed.push({
        trustDomain,
        code: err instanceof K8sError ? err.code : 'ERR_K8S_RESPONSE',
        message: (err as Error).message,
      });
      this.#o.observer?.error?.(trustDomain, err);
      this.#log.warn('ClusterTrustBundle write failed', { trustDomain, error: (err as Error).message });
    };
    {
      const desired = this.#desired(want, omitted);
      let ours: Map<string, KubeObject>;
      try {
        const { items } = await this.#o.api.list(CLUSTER_TRUST_BUNDLES, {
          labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${COMPONENT_LABEL}=${CTB_COMPONENT}`,
          signal,
        });
        ours = new Map(items.filter((o) => this.#isOurs(o)).map((o) => [o.metadata.name, o] as const));
      } catch (err) {
        signal.throwIfAborted();
        fail(
          '*',
          isNotFound(err)
            ? new K8sError(
                'ERR_K8S_NOT_FOUND',
                `ClusterTrustBundles are not served by this API server (${(err as Error).message}): kube-apiserver >= 1.33 needs --feature-gates=ClusterTrustBundle=true and --runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true`,
                { cause: err },
              )
            : err,
        );
        return { ok: false, written: [], removed: [], failed };
      }
      for (const d of desired) {
        signal.throwIfAborted();
        try {
          if (await this.#ensure(d, ours.get(d.name), signal)) written.add(d.trustDomain);
          present.add(d.trustDomain);
        } catch (err) {
          signal.throwIfAborted();
          fail(d.trustDomain, err);
          // The previous version, if any, is still there.
          if (ours.has(d.name)) present.add(d.trustDomain);
        }
      }
      const wanted = new Set(desired.map((d) => d.name));
      for (const [name, obj] of ours) {
        const td = obj.metadata.annotations?.[TRUST_DOMAIN_ANNOTATION] ?? '';
        if (wanted.has(name)) continue;
        if (want.retained.has(td) && specOf(obj).signerName === this.#signer) {
          present.add(td);
          continue;
        }
        signal.throwIfAborted();
        try {
          // Preconditions: never delete a version we did not look at.
          const rv = obj.metadata.resourceVersion;
          const gone = await this.#o.api.delete(
            CLUSTER_TRUST_BUNDLES,
            name,
            undefined,
            rv ? { resourceVersion: rv } : undefined,
            signal,
          );
          if (gone) {
            removed.add(td);
            this.#log.info('ClusterTrustBundle deleted', { name, trustDomain: td });
            this.#o.observer?.deleted?.(name, td);
          }
        } catch (err) {
          signal.throwIfAborted();
          fail(td, err);
          present.add(td);
        }
      }
      return { ok: failed.length === 0, written: [...written].sort(), removed: [...removed].sort(), failed };
    }
  }

  #desired(want: DesiredBundles, omitted: { trustDomain: string; reason: string }[]): Desired[] {
    const out: Desired[] = [];
    for (const [td, bundle] of want.bundles) {
      const pem = clusterTrustBundlePem(bundle);
      if (pem === '') {
        const reason = `the bundle of ${td} has no X.509 CA authority: no ClusterTrustBundle (the API requires at least one)`;
        omitted.push({ trustDomain: td, reason });
        this.#o.observer?.skipped?.(td, reason);
        this.#once(`skip:${td}:${bundle.sequence}`, () => this.#log.info(reason, { trustDomain: td }));
        continue;
      }
      out.push({
        name: clusterTrustBundleName(this.#signer, td),
        trustDomain: td,
        pem,
        sequence: bundle.sequence.toString(),
      });
    }
    return out;
  }

  #once(key: string, say: () => void): void {
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    say();
  }

  #isOurs(obj: KubeObject): boolean {
    return (
      obj.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE &&
      obj.metadata.labels?.[COMPONENT_LABEL] === CTB_COMPONENT &&
      obj.metadata.annotations?.[OWNER_ANNOTATION] === this.#owner
    );
  }

  #build(d: Desired): KubeObject {
    return {
      metadata: {
        name: d.name,
        labels: {
          [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
          [COMPONENT_LABEL]: CTB_COMPONENT,
          [TRUST_DOMAIN_LABEL]: trustDomainLabelValue(d.trustDomain),
        },
        annotations: {
          [OWNER_ANNOTATION]: this.#owner,
          [TRUST_DOMAIN_ANNOTATION]: d.trustDomain,
          [SEQUENCE_ANNOTATION]: d.sequence,
        },
      },
      spec: { signerName: this.#signer, trustBundle: d.pem },
    };
  }

  /** Creates or updates one object; true when it wrote. */
  async #ensure(d: Desired, current: KubeObject | undefined, signal: AbortSignal): Promise<boolean> {
    const want = this.#build(d);
    if (current) {
      const same =
        specOf(current).trustBundle === d.pem &&
        specOf(current).signerName === this.#signer &&
        jsonEqual(pick(current.metadata.labels, want.metadata.labels), want.metadata.labels) &&
        jsonEqual(pick(current.metadata.annotations, want.metadata.annotations), want.metadata.annotations);
      if (same) return false;
      // Conditional on the resourceVersion read: a concurrent edit makes this a 409, retried.
      await this.#o.api.replace(
        CLUSTER_TRUST_BUNDLES,
        {
          ...current,
          metadata: {
            ...current.metadata,
            labels: { ...current.metadata.labels, ...want.metadata.labels },
            annotations: { ...current.metadata.annotations, ...want.metadata.annotations },
          },
          spec: want.spec,
        },
        signal,
      );
      this.#log.info('ClusterTrustBundle updated', { name: d.name, trustDomain: d.trustDomain });
      this.#o.observer?.updated?.(d.name, d.trustDomain);
      return true;
    }
    try {
      await this.#o.api.create(CLUSTER_TRUST_BUNDLES, want, signal);
      this.#log.info('ClusterTrustBundle created', { name: d.name, trustDomain: d.trustDomain });
      this.#o.observer?.created?.(d.name, d.trustDomain);
      return true;
    } catch (err) {
      if (!isConflict(err)) throw err;
      const existing = await this.#o.api.get(CLUSTER_TRUST_BUNDLES, d.name, undefined, signal);
      if (existing && this.#isOurs(existing)) return this.#ensure(d, existing, signal);
      const foreign = new K8sError(
        'ERR_K8S_FOREIGN_OBJECT',
        `ClusterTrustBundle ${d.name} exists and is not managed by this broker (owner ${this.#owner}); the bundle of ${d.trustDomain} is not written there`,
      );
      this.#o.observer?.foreign?.(d.name, foreign);
      // A failure of this trust domain (its roots are not published), logged by the caller.
      throw foreign;
    }
  }
}

function specOf(obj: KubeObject): { signerName?: unknown; trustBundle?: unknown } {
  const spec = obj.spec;
  return spec !== null && typeof spec === 'object' ? (spec as Record<string, unknown>) : {};
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
