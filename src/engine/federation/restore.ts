import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { Logger } from '../../platform/logger.js';
import type { Allowlist } from '../config/types.js';
import type { RestoredPeer } from './manager.js';
import type { StateStore } from './state-store.js';

/** A SPIRE server to re-read lost last-known-good bundles from (a SpireServerClient fits). */
export interface RecoverySource {
  /** Every federated bundle the server holds. */
  listFederatedBundles(opts: { signal: AbortSignal }): Promise<TrustBundle[]>;
}

/** What {@link restorePeers} needs. */
export interface RestoreOptions {
  readonly state: StateStore;
  readonly allowlist: Allowlist;
  /** SPIRE servers by name. */
  readonly spire: ReadonlyMap<string, RecoverySource>;
  /** The source server's name: asked first. */
  readonly source: string;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Per SPIRE server, how long to wait for its list. Default 5 s. */
  readonly timeoutMs?: number;
}

/**
 * What survived a restart, for {@link FederationManager.restore}: each allowlisted peer's
 * last-known-good bundle and persisted `spiffe_sequence` high-water mark. A peer whose bundle
 * file is gone (deleted, quarantined) gets what SPIRE holds for it — the best baseline: it
 * authenticates an https_spiffe endpoint and bounds rollback — persisted again, and its origin
 * (`spire:<server>`) says so in status. One ListFederatedBundles per server, never one call per
 * peer: a cold start with thousands of lost files and a SPIRE that is down must not wait
 * thousands of timeouts. A server that does not answer is skipped; the peer then has no bundle,
 * and the SPIRE syncs leave what SPIRE holds for it untouched until a fetch succeeds.
 */
export async function restorePeers(opts: RestoreOptions): Promise<RestoredPeer[]> {
  const { state, logger } = opts;
  const loaded = await state.loadAll();
  for (const p of loaded.problems) logger.error('state file problem', { code: p.code, error: p.message });
  const allowed = new Set(opts.allowlist.peers.map((p) => p.trustDomain.name));
  const restored = new Map<string, RestoredPeer>();
  for (const s of loaded.peers) {
    const td = s.trustDomain.name;
    if (!allowed.has(td)) continue;
    const b = s.lastKnownGood?.bundle;
    restored.set(td, {
      trustDomain: td,
      ...(b ? { bundle: b, origin: 'state' as const } : {}),
      ...(s.sequenceHighWaterMark !== undefined ? { sequenceFloor: s.sequenceHighWaterMark } : {}),
    });
  }
  const lost = new Set(
    opts.allowlist.peers.map((p) => p.trustDomain.name).filter((td) => !restored.get(td)?.bundle),
  );
  const ordered = [...opts.spire].sort(([a], [b]) => (a === opts.source ? -1 : b === opts.source ? 1 : 0));
  for (const [name, client] of ordered) {
    const server = { name };
    if (lost.size === 0) break;
    const held = await client
      .listFederatedBundles({
        signal: AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 5000)]),
      })
      .catch((err: unknown) => {
        logger.warn('could not read federated bundles from SPIRE to recover lost state', {
          server: server.name,
          error: String(err),
        });
        return [];
      });
    for (const bundle of held) {
      const td = bundle.trustDomain.name;
      if (!lost.delete(td)) continue;
      const floor = restored.get(td)?.sequenceFloor;
      restored.set(td, {
        trustDomain: td,
        bundle,
        origin: `spire:${server.name}`,
        ...(floor !== undefined ? { sequenceFloor: floor } : {}),
      });
      logger.warn('last-known-good bundle re-read from SPIRE (its state file was missing)', {
        trustDomain: td,
        server: server.name,
        sequence: bundle.sequence,
      });
      await state.saveAccepted(bundle).catch((err: unknown) =>
        logger.error('could not persist the bundle re-read from SPIRE', {
          trustDomain: td,
          error: String(err),
        }),
      );
    }
  }
  return [...restored.values()];
}

/**
 * `server/trust domain` keys of the bundles that came from the state directory, for every server:
 * readiness waits until each is in SPIRE.
 */
export function restoredFromState(restored: readonly RestoredPeer[], servers: Iterable<string>): string[] {
  const tds = restored.filter((r) => r.bundle && r.origin === 'state').map((r) => r.trustDomain);
  return [...servers].flatMap((server) => tds.map((td) => `${server}/${td}`));
}
