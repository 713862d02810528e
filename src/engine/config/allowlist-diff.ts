import type { Allowlist, PeerConfig } from './types.js';

/** What changed between two allowlists, by trust domain. */
export interface AllowlistDiff {
  /** Peers only in the new allowlist. */
  readonly added: readonly PeerConfig[];
  /** Peers only in the old allowlist: their relationships end (SPIFFE Federation §6.3). */
  readonly removed: readonly PeerConfig[];
  /** Peers in both whose settings differ (the source line alone does not count). */
  readonly changed: readonly { readonly before: PeerConfig; readonly after: PeerConfig }[];
}

/**
 * A stable, comparable rendering of a peer's settings: everything but its source line. Two peers
 * with the same key are configured identically.
 */
export function peerSettingsKey(peer: PeerConfig): string {
  const p = peer.profile;
  return JSON.stringify([
    peer.trustDomain.name,
    peer.urls.map((u) => u.href),
    p.kind === 'https_web'
      ? [p.kind, p.caFile ?? null]
      : [p.kind, p.endpointSpiffeId.toString(), p.bootstrapBundleFile ?? null],
    [peer.refresh.minIntervalSeconds, peer.refresh.maxIntervalSeconds],
    [
      peer.keyPolicy.maxKeys ?? null,
      peer.keyPolicy.allowedKeyTypes ?? null,
      peer.keyPolicy.allowedCurves ?? null,
      peer.keyPolicy.minRsaBits ?? null,
    ],
    peer.targetServers,
    peer.allowEmptyBundle,
    peer.relay ?? false,
    peer.oidcIssuer ?? null,
  ]);
}

/**
 * Compares two allowlists. `before` may be undefined (everything is added). Order: the order of
 * peers in the respective files.
 */
export function diffAllowlists(before: Allowlist | undefined, after: Allowlist): AllowlistDiff {
  const old = new Map((before?.peers ?? []).map((p) => [p.trustDomain.name, p]));
  const now = new Map(after.peers.map((p) => [p.trustDomain.name, p]));
  const added: PeerConfig[] = [];
  const changed: { before: PeerConfig; after: PeerConfig }[] = [];
  for (const [name, peer] of now) {
    const prev = old.get(name);
    if (!prev) added.push(peer);
    else if (peerSettingsKey(prev) !== peerSettingsKey(peer)) changed.push({ before: prev, after: peer });
  }
  const removed = [...old].filter(([name]) => !now.has(name)).map(([, p]) => p);
  return { added, removed, changed };
}

/** True when the diff holds no change. */
export function allowlistDiffEmpty(d: AllowlistDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0;
}
