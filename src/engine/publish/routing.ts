import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { PeerConfig } from '../config/types.js';

/** What {@link PublishRouting} reads: the allowlisted peers and the bundles held for them. */
export interface PublishRoutingDeps {
  /** Peers currently allowlisted (the federation manager's). */
  readonly peers: () => readonly PeerConfig[];
  /** One allowlisted peer by trust domain name: asked once per accepted bundle, so O(1). */
  readonly peer: (trustDomain: string) => PeerConfig | undefined;
  /** The bundle held for a peer (the federated bundle store). */
  readonly bundle: (trustDomain: string) => TrustBundle | undefined;
  /** Names of every configured sink target (SPIRE servers). */
  readonly servers: () => readonly string[];
}

/**
 * Which accepted bundle goes to which target: an allowlist entry's `targetServers` ('all', or a
 * list of configured SPIRE server names) decides. Every sink asks here for its desired set, so a
 * bundle's route is decided in one place.
 */
export class PublishRouting {
  readonly #deps: PublishRoutingDeps;

  constructor(deps: PublishRoutingDeps) {
    this.#deps = deps;
  }

  /** The bundles SPIRE server `name` should hold: every held bundle whose peer targets it. */
  desiredFor(name: string): Map<string, TrustBundle> {
    const out = new Map<string, TrustBundle>();
    for (const peer of this.#aimedAt(name)) {
      const b = this.#deps.bundle(peer.trustDomain.name);
      if (b) out.set(peer.trustDomain.name, b);
    }
    return out;
  }

  /**
   * Allowlisted trust domains aimed at SPIRE server `name` for which no bundle is held (never
   * fetched, state file lost, SPIRE unreachable at start): what the server holds for them stays
   * untouched — a restart must never revoke a peer that is still allowlisted.
   */
  retainedFor(name: string): Set<string> {
    const out = new Set<string>();
    for (const peer of this.#aimedAt(name)) {
      if (!this.#deps.bundle(peer.trustDomain.name)) out.add(peer.trustDomain.name);
    }
    return out;
  }

  /** The SPIRE servers a peer's bundle is written to (its allowlist entry's targets, resolved). */
  targetsOf(trustDomain: string): string[] {
    // Once per accepted bundle (propagation tracking): a scan of every peer here made a 10,000-peer
    // cold start allocate ~1.2 GiB (an allocation profile of bench/scale.bench.ts).
    const peer = this.#deps.peer(trustDomain);
    if (!peer) return [];
    const servers = this.#deps.servers();
    return peer.targetServers === 'all'
      ? [...servers]
      : peer.targetServers.filter((n) => servers.includes(n));
  }

  #aimedAt(name: string): PeerConfig[] {
    return this.#deps.peers().filter((p) => p.targetServers === 'all' || p.targetServers.includes(name));
  }
}
