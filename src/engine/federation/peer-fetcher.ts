import { parseBundleFile } from '../../core/bundle/bundle-file.js';
import type { BundleSource } from '../../core/bundle/source.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { FetchError } from '../../errors.js';
import type { Clock } from '../../platform/clock.js';
import type { FetchConfig, PeerConfig } from '../config/types.js';
import { type FetchDeps, type FetchProfile, fetchPeerBundle } from './fetch.js';
import type { PeerFetcher } from './peer-updater.js';

/** What {@link ConfiguredPeerFetcher} needs. */
export interface ConfiguredPeerFetcherDeps {
  readonly clock: Clock;
  /** Reads a file the allowlist names (CA file, bootstrap bundle). */
  readonly readFile: (path: string) => Promise<Uint8Array>;
  /** The broker's held federated bundles: an https_spiffe endpoint is authenticated with them. */
  readonly bundles: BundleSource & { get(trustDomain: string): TrustBundle | undefined };
  /** Limits of every fetch (broker.yaml `fetch`). */
  readonly limits: FetchConfig;
  /** Transport (tests inject a connector that trusts a test CA). */
  readonly fetchDeps?: FetchDeps;
}

/**
 * The peer fetcher of a configured broker: turns an allowlist entry's endpoint profile into what
 * {@link fetchPeerBundle} needs — the pinned CA of an https_web entry, or for https_spiffe the
 * endpoint SPIFFE ID with a live bundle source (the latest accepted bundle of the endpoint's
 * trust domain, the operator's bootstrap bundle only before the first one) — and fetches with
 * the broker's limits. Files are read once and cached (a failed read is retried next time).
 */
export class ConfiguredPeerFetcher implements PeerFetcher {
  readonly #deps: ConfiguredPeerFetcherDeps;
  readonly #bootstrap = new Map<string, Promise<TrustBundle | undefined>>();
  readonly #caPem = new Map<string, Promise<string>>();

  constructor(deps: ConfiguredPeerFetcherDeps) {
    this.#deps = deps;
  }

  async fetch(peer: PeerConfig, opts: Parameters<PeerFetcher['fetch']>[1]): ReturnType<PeerFetcher['fetch']> {
    const { limits } = this.#deps;
    const r = await fetchPeerBundle(
      {
        trustDomain: peer.trustDomain,
        urls: peer.urls,
        profile: await this.#profile(peer),
        ...(opts.etag !== undefined ? { etag: opts.etag } : {}),
        ...(opts.waitSeconds !== undefined ? { waitSeconds: opts.waitSeconds } : {}),
        limits: {
          connectTimeoutMs: limits.connectTimeoutMs,
          timeoutMs: limits.timeoutMs,
          maxBodyBytes: limits.maxBodyBytes,
        },
        signal: opts.signal,
      },
      { clock: this.#deps.clock, ...this.#deps.fetchDeps },
    );
    return r.kind === 'bundle'
      ? {
          kind: 'bundle',
          bundle: r.bundle,
          url: r.url,
          supportsLongPoll: r.supportsLongPoll,
          ...(r.etag ? { etag: r.etag } : {}),
        }
      : { kind: 'not-modified', url: r.url, etag: r.etag, supportsLongPoll: r.supportsLongPoll };
  }

  async #profile(peer: PeerConfig): Promise<FetchProfile> {
    const p = peer.profile;
    if (p.kind === 'https_web') {
      if (!p.caFile) return { kind: 'https_web' };
      return {
        kind: 'https_web',
        caPem: await this.#cached(this.#caPem, p.caFile, (b) => Buffer.from(b).toString('utf8')),
      };
    }
    const endpointTd = p.endpointSpiffeId.trustDomain;
    const bootstrap = await this.#bootstrapBundle(endpointTd, p.bootstrapBundleFile);
    const held = this.#deps.bundles;
    // SPIFFE Federation §5.2.2.4: the first connection uses the operator's bootstrap bundle, every
    // later one the latest accepted bundle of the endpoint ID's trust domain.
    const bundles: BundleSource = {
      getBundleForTrustDomain: (td) =>
        held.getBundleForTrustDomain(td) ?? (td.equals(endpointTd) ? bootstrap : undefined),
    };
    if (!held.get(endpointTd.name) && !bootstrap) {
      throw new FetchError(
        'ERR_FETCH_NO_BOOTSTRAP_BUNDLE',
        `no bundle of ${endpointTd.name} to authenticate ${p.endpointSpiffeId.toString()}: configure bootstrapBundleFile`,
      );
    }
    return { kind: 'https_spiffe', endpointSpiffeId: SpiffeId.parse(p.endpointSpiffeId.toString()), bundles };
  }

  async #bootstrapBundle(td: TrustDomain, file: string | undefined): Promise<TrustBundle | undefined> {
    if (!file) return undefined;
    // SPIFFE bundle, Bundle Map or PEM, as `spire-server bundle show` prints it.
    return this.#cached(
      this.#bootstrap,
      `${td.name}\n${file}`,
      (bytes) => parseBundleFile(td, bytes).bundle,
      file,
    );
  }

  #cached<T>(
    cache: Map<string, Promise<T>>,
    key: string,
    decode: (b: Uint8Array) => T,
    file = key,
  ): Promise<T> {
    let v = cache.get(key);
    if (!v) {
      v = this.#deps.readFile(file).then(decode);
      cache.set(key, v);
      v.catch(() => cache.delete(key));
    }
    return v;
  }
}
