import { X509Certificate } from 'node:crypto';
import { parseBundle } from '../../core/bundle/index.js';
import { SpiffeId } from '../../core/spiffeid/index.js';
import type { Allowlist, AllowlistParseOptions } from '../../engine/config/index.js';
import { BrokerError, type ErrorCode } from '../../errors.js';
import type { Clock } from '../../platform/clock.js';
import { pemCertificateBlocks } from '../pki/pem.js';
import { type K8sLogger, nullLogger, Trigger } from './deps.js';
import {
  CLUSTER_FEDERATED_TRUST_DOMAINS,
  CONFIG_MAPS,
  FEDERATION_PEERS,
  type KubeApi,
  type KubeObject,
} from './kube-api.js';
import {
  type ClusterFederatedTrustDomainSpec,
  type ConfigMapKeyRef,
  entryFromClusterFederatedTrustDomain,
  entryFromFederationPeer,
  type FederationPeerSpec,
  type PeerCandidate,
  type PeerRejection,
  type ResolvedReferences,
  validatePeerCandidates,
} from './peer-spec.js';
import { withAcceptance } from './peer-status.js';
import type { ReferenceFileStore } from './reference-files.js';
import { Reflector, type ReflectorObserver } from './reflector.js';
import { FederationPeerStatusWriter } from './status-writer.js';

/**
 * The allowlist from the cluster: FederationPeer objects (and, optionally, spire-controller-manager's
 * ClusterFederatedTrustDomain objects of one class), watched, converted and validated by the same
 * rules as the YAML allowlist, emitted as an {@link Allowlist}. Invalid objects are left out and get
 * an `Accepted=False` condition saying why; they never stop the source or the other peers.
 * @module
 */

/** Which ClusterFederatedTrustDomains the broker adopts. */
export interface ClusterFederatedTrustDomainSelection {
  /**
   * Objects whose `spec.className` equals this are read. spire-controller-manager processes only
   * its own class, so giving the broker a class of its own keeps the two apart. Default `spiffe-broker`.
   */
  readonly className?: string;
  /** Also read objects without a className. Default false (spire-controller-manager may own them). */
  readonly includeClassless?: boolean;
}

/** Options of {@link CrdAllowlistSource}. */
export interface CrdAllowlistSourceOptions {
  readonly api: KubeApi;
  readonly clock: Clock;
  readonly logger?: K8sLogger;
  /** Where inline bundles and referenced ConfigMap content become files. */
  readonly references: ReferenceFileStore;
  /** Same as for the YAML allowlist: the local trust domain (refused as a peer), SPIRE server names. */
  readonly parse?: AllowlistParseOptions;
  /** Read ClusterFederatedTrustDomains too. Default: not read. */
  readonly clusterFederatedTrustDomains?: ClusterFederatedTrustDomainSelection;
  /**
   * Re-evaluates everything (re-reading referenced ConfigMaps, which are not watched) this often,
   * ms. Default 60 000.
   */
  readonly resyncMs?: number;
  /** Whether this replica may write status now (the leader). Default: always. */
  readonly canWriteStatus?: () => boolean;
  /** Passed to both reflectors. */
  readonly reflectorObserver?: ReflectorObserver;
  /** Watch timeout passed to the reflectors, seconds (tests use short ones). */
  readonly watchTimeoutSeconds?: number;
}

/** A resource the source refused, with why. */
export interface RejectedPeer {
  readonly kind: 'FederationPeer' | 'ClusterFederatedTrustDomain';
  readonly name: string;
  readonly code: ErrorCode;
  readonly message: string;
}

/** Upper bound of referenced content (a bundle or a CA file), bytes. */
const MAX_REFERENCE_BYTES = 1024 * 1024;

/** Thrown inside resolution when a reference is unusable; becomes a rejection. */
class ReferenceProblem extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

function byAgeThenName(a: KubeObject, b: KubeObject): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

/**
 * Watches FederationPeers (and selected ClusterFederatedTrustDomains) and emits the allowlist they
 * make. The first allowlist is emitted only once every watched type has been listed, so a restart
 * never briefly reports peers as removed.
 *
 * @example
 * const source = new CrdAllowlistSource({ api, clock: systemClock, references: new DirectoryReferenceStore(dir),
 *   parse: { localTrustDomain: 'example.org', serverNames: ['main'] } });
 * source.subscribe((allowlist) => manager.setAllowlist(allowlist));
 * await source.run(signal);
 */
export class CrdAllowlistSource {
  readonly #o: CrdAllowlistSourceOptions;
  readonly #log: K8sLogger;
  readonly #peers: Reflector;
  readonly #cftds: Reflector | undefined;
  readonly #trigger = new Trigger();
  readonly #listeners = new Set<(allowlist: Allowlist) => void>();
  readonly #status: FederationPeerStatusWriter;
  #current: Allowlist | undefined;
  #rejected: readonly RejectedPeer[] = [];
  #holders = new Map<string, KubeObject>();
  #waiters: ((a: Allowlist) => void)[] = [];
  /** Reference files of the previous evaluation: kept one round longer for in-flight readers. */
  #previousKeep = new Set<string>();

  constructor(opts: CrdAllowlistSourceOptions) {
    this.#o = opts;
    this.#log = opts.logger ?? nullLogger;
    const common = {
      api: opts.api,
      clock: opts.clock,
      logger: this.#log,
      ...(opts.reflectorObserver ? { observer: opts.reflectorObserver } : {}),
      ...(opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: opts.watchTimeoutSeconds } : {}),
    };
    this.#peers = new Reflector({ ...common, type: FEDERATION_PEERS });
    this.#cftds = opts.clusterFederatedTrustDomains
      ? new Reflector({ ...common, type: CLUSTER_FEDERATED_TRUST_DOMAINS, absentIsEmpty: true })
      : undefined;
    this.#status = new FederationPeerStatusWriter({
      api: opts.api,
      clock: opts.clock,
      logger: this.#log,
      lookup: (td) => this.objectFor(td),
    });
  }

  /** The last allowlist emitted, if any. */
  current(): Allowlist | undefined {
    return this.#current;
  }

  /** Resources left out of the current allowlist, with why. */
  rejected(): readonly RejectedPeer[] {
    return this.#rejected;
  }

  /** The FederationPeer that supplies `trustDomain` in the current allowlist (not a CFTD). */
  objectFor(trustDomain: string): KubeObject | undefined {
    const o = this.#holders.get(trustDomain);
    return o?.kind === FEDERATION_PEERS.kind ? (this.#peers.get(o.metadata.name) ?? o) : undefined;
  }

  /** A status writer bound to this source's trust domain → FederationPeer mapping. */
  get statusWriter(): FederationPeerStatusWriter {
    return this.#status;
  }

  /** Calls `listener` with each new allowlist (not with the current one); returns unsubscribe. */
  subscribe(listener: (allowlist: Allowlist) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves with the current allowlist, or the first one emitted. */
  waitForAllowlist(signal: AbortSignal): Promise<Allowlist> {
    if (this.#current) return Promise.resolve(this.#current);
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push((a) => {
        signal.removeEventListener('abort', onAbort);
        resolve(a);
      });
    });
  }

  /** Watches and re-evaluates until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const fire = (): void => this.#trigger.fire();
    const unsub = [this.#peers.subscribe(fire), this.#cftds?.subscribe(fire)];
    const inner = new AbortController();
    const onAbort = (): void => inner.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const reflectors = [this.#peers.run(inner.signal), this.#cftds?.run(inner.signal)];
    const resync = this.#o.resyncMs ?? 60_000;
    try {
      await this.#peers.waitForSync(signal);
      await this.#cftds?.waitForSync(signal);
      let backoff = 500;
      for (;;) {
        try {
          await this.#reconcile(signal);
          backoff = 500;
          await this.#trigger.wait(this.#o.clock, resync, signal);
        } catch (err) {
          if (signal.aborted) break;
          this.#log.warn('FederationPeer evaluation failed; retrying', {
            error: (err as Error).message,
            retryInMs: backoff,
          });
          await this.#trigger.wait(this.#o.clock, backoff, signal);
          backoff = Math.min(resync, backoff * 2);
        }
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      inner.abort(signal.reason);
      for (const u of unsub) u?.();
      await Promise.allSettled(reflectors);
    }
  }

  async #reconcile(signal: AbortSignal): Promise<void> {
    const candidates: PeerCandidate[] = [];
    const objects = new Map<string, KubeObject>();
    const early: PeerRejection[] = [];
    const keep = new Set<string>();
    const peers = this.#peers.items().sort(byAgeThenName);
    for (const obj of peers) {
      const id = `FederationPeer/${obj.metadata.name}`;
      objects.set(id, obj);
      const spec = obj.spec as FederationPeerSpec | undefined;
      const base = { id, kind: 'FederationPeer' as const, name: obj.metadata.name };
      try {
        const refs = await this.#resolveFederationPeer(spec, signal);
        if (refs.caFile) keep.add(refs.caFile);
        if (refs.bootstrapBundleFile) keep.add(refs.bootstrapBundleFile);
        candidates.push({ ...base, entry: entryFromFederationPeer(spec, refs) });
      } catch (err) {
        if (!(err instanceof ReferenceProblem)) throw err;
        early.push({ candidate: { ...base, entry: {} }, code: err.code, message: err.message });
      }
    }
    const sel = this.#o.clusterFederatedTrustDomains;
    if (sel && this.#cftds) {
      const className = sel.className ?? 'spiffe-broker';
      const cftds = this.#cftds
        .items()
        .filter((o) => {
          const c = (o.spec as ClusterFederatedTrustDomainSpec | undefined)?.className;
          return c === className || (sel.includeClassless === true && (c === undefined || c === ''));
        })
        .sort(byAgeThenName);
      for (const obj of cftds) {
        const id = `ClusterFederatedTrustDomain/${obj.metadata.name}`;
        objects.set(id, obj);
        const spec = obj.spec as ClusterFederatedTrustDomainSpec | undefined;
        const base = { id, kind: 'ClusterFederatedTrustDomain' as const, name: obj.metadata.name };
        try {
          const refs = await this.#resolveClusterFederatedTrustDomain(spec);
          if (refs.bootstrapBundleFile) keep.add(refs.bootstrapBundleFile);
          candidates.push({ ...base, entry: entryFromClusterFederatedTrustDomain(spec, refs) });
        } catch (err) {
          if (!(err instanceof ReferenceProblem)) throw err;
          early.push({ candidate: { ...base, entry: {} }, code: err.code, message: err.message });
        }
      }
    }
    const result = validatePeerCandidates(candidates, this.#o.parse ?? {});
    const rejections = [...early, ...result.rejected];
    const holders = new Map<string, KubeObject>();
    for (const { candidate, peer } of result.accepted) {
      const obj = objects.get(candidate.id);
      if (obj) holders.set(peer.trustDomain.name, obj);
    }
    this.#holders = holders;
    this.#rejected = rejections.map((r) => ({
      kind: r.candidate.kind,
      name: r.candidate.name,
      code: r.code,
      message: r.message,
    }));
    for (const r of rejections) {
      this.#log.warn(`${r.candidate.id} rejected`, { code: r.code, message: r.message });
    }
    const changed = this.#current?.version !== result.allowlist.version;
    if (changed) {
      this.#current = result.allowlist;
      for (const w of this.#waiters.splice(0)) w(result.allowlist);
      for (const l of this.#listeners) {
        try {
          l(result.allowlist);
        } catch (err) {
          this.#log.error('allowlist listener threw', { error: (err as Error).message });
        }
      }
    }
    // Files of the allowlist before this one may still be read by a fetch in flight.
    await this.#o.references.prune(new Set([...keep, ...this.#previousKeep]));
    this.#previousKeep = keep;
    if (this.#o.canWriteStatus?.() ?? true)
      await this.#writeAcceptance(result.accepted, rejections, objects, signal);
  }

  async #writeAcceptance(
    accepted: readonly { candidate: PeerCandidate }[],
    rejected: readonly PeerRejection[],
    objects: Map<string, KubeObject>,
    signal: AbortSignal,
  ): Promise<void> {
    const now = this.#o.clock.now();
    const verdicts: [KubeObject, Parameters<typeof withAcceptance>[2]][] = [];
    for (const { candidate } of accepted) {
      const obj = objects.get(candidate.id);
      if (obj && candidate.kind === 'FederationPeer') verdicts.push([obj, { accepted: true }]);
    }
    for (const r of rejected) {
      const obj = objects.get(r.candidate.id);
      if (obj && r.candidate.kind === 'FederationPeer') {
        verdicts.push([obj, { accepted: false, code: r.code, message: r.message }]);
      }
    }
    for (const [obj, verdict] of verdicts) {
      try {
        await this.#status.update(
          obj,
          (status, fresh) => withAcceptance(status, fresh.metadata.generation, verdict, now),
          signal,
        );
      } catch (err) {
        if (signal.aborted) throw err;
        this.#log.warn('cannot write FederationPeer acceptance', {
          name: obj.metadata.name,
          error: (err as Error).message,
        });
      }
    }
  }

  async #resolveFederationPeer(
    spec: FederationPeerSpec | undefined,
    signal: AbortSignal,
  ): Promise<ResolvedReferences> {
    const ep = spec?.bundleEndpoint;
    if (!ep) return {};
    const out: { caFile?: string; bootstrapBundleFile?: string } = {};
    if (ep.caConfigMapRef) {
      const pem = await this.#readConfigMapKey(
        ep.caConfigMapRef,
        'spec.bundleEndpoint.caConfigMapRef',
        signal,
      );
      checkPem(pem, 'spec.bundleEndpoint.caConfigMapRef');
      out.caFile = await this.#o.references.put(pem, 'pem');
    }
    let bundle: string | undefined;
    let where = 'spec.bundleEndpoint.bootstrapBundle';
    if (typeof ep.bootstrapBundle === 'string') bundle = ep.bootstrapBundle;
    else if (ep.bootstrapBundleConfigMapRef) {
      where = 'spec.bundleEndpoint.bootstrapBundleConfigMapRef';
      bundle = await this.#readConfigMapKey(ep.bootstrapBundleConfigMapRef, where, signal);
    }
    if (bundle !== undefined) {
      checkBundle(bundle, ep.endpointSPIFFEID, where);
      out.bootstrapBundleFile = await this.#o.references.put(bundle, 'json');
    }
    return out;
  }

  async #resolveClusterFederatedTrustDomain(
    spec: ClusterFederatedTrustDomainSpec | undefined,
  ): Promise<ResolvedReferences> {
    const bundle = spec?.trustDomainBundle;
    // With https_web there is nothing for an initial bundle to do; only https_spiffe uses it.
    if (typeof bundle !== 'string' || bundle === '' || spec?.bundleEndpointProfile?.type !== 'https_spiffe')
      return {};
    checkBundle(bundle, spec.bundleEndpointProfile.endpointSPIFFEID, 'spec.trustDomainBundle');
    return { bootstrapBundleFile: await this.#o.references.put(bundle, 'json') };
  }

  async #readConfigMapKey(ref: ConfigMapKeyRef, where: string, signal: AbortSignal): Promise<string> {
    // A transient API failure propagates (the round is retried); only a definite answer rejects.
    const cm = await this.#o.api.get(CONFIG_MAPS, ref.name, ref.namespace, signal);
    if (!cm) {
      throw new ReferenceProblem(
        'ERR_K8S_REFERENCE',
        `${where}: ConfigMap ${ref.namespace}/${ref.name} does not exist`,
      );
    }
    const value = (cm.data as Record<string, unknown> | undefined)?.[ref.key];
    if (typeof value !== 'string') {
      throw new ReferenceProblem(
        'ERR_K8S_REFERENCE',
        `${where}: ConfigMap ${ref.namespace}/${ref.name} has no data key ${JSON.stringify(ref.key)}`,
      );
    }
    if (Buffer.byteLength(value) > MAX_REFERENCE_BYTES) {
      throw new ReferenceProblem('ERR_K8S_REFERENCE', `${where}: more than ${MAX_REFERENCE_BYTES} bytes`);
    }
    return value;
  }
}

/** The content must be one or more PEM certificates (a CA for https_web). */
function checkPem(pem: string, where: string): void {
  const blocks = pemCertificateBlocks(pem);
  if (blocks.length === 0) {
    throw new ReferenceProblem('ERR_K8S_REFERENCE', `${where}: no PEM CERTIFICATE block`);
  }
  blocks.forEach((b, i) => {
    try {
      new X509Certificate(b);
    } catch {
      throw new ReferenceProblem(
        'ERR_K8S_REFERENCE',
        `${where}: certificate ${i} is not a valid X.509 certificate`,
      );
    }
  });
}

/**
 * A bootstrap bundle must parse as the SPIFFE bundle of the endpoint's trust domain. When the
 * endpoint SPIFFE ID itself is invalid the allowlist validation reports that instead.
 */
function checkBundle(text: string, endpointId: unknown, where: string): void {
  if (typeof endpointId !== 'string') return;
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(endpointId);
  } catch {
    return;
  }
  try {
    parseBundle(id.trustDomain, text);
  } catch (err) {
    if (err instanceof BrokerError) throw new ReferenceProblem(err.code, `${where}: ${err.message}`);
    throw err;
  }
}
