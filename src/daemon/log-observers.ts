import { limitRepeatedReports, RepeatLimiter } from '../adapters/audit/repeat-limiter.js';
import type { FederationObserver } from '../engine/federation/manager.js';
import { blockingEntryCount, type SpireSyncObserver } from '../engine/publish/spire-sync.js';
import type { Logger } from '../platform/logger.js';

/**
 * The daemon's log lines for federation and SPIRE sync events (JSON lines, docs/operations.md).
 * Identical refusals and failures of a peer are limited to one line a minute that says how many
 * it stands for, so a hostile peer cannot fill the disk through the log.
 */
export function logObservers(
  log: Logger,
  now: () => number,
): { readonly federation: Partial<FederationObserver>; readonly sync: Partial<SpireSyncObserver> } {
  const federation = limitRepeatedReports<
    Parameters<FederationObserver['refused']>[0],
    Partial<FederationObserver>
  >(
    {
      accepted: (peer, bundle, previous) =>
        log.info('accepted peer bundle', {
          trustDomain: peer.trustDomain.name,
          sequence: bundle.sequence,
          previousSequence: previous?.sequence,
        }),
      refused: (peer, error) =>
        log.warn('refused peer bundle', {
          trustDomain: peer.trustDomain.name,
          code: error.code,
          error: error.message,
        }),
      failed: (peer, error) =>
        log.warn('peer fetch failed', {
          trustDomain: peer.trustDomain.name,
          code: error.code,
          error: error.message,
        }),
      revoked: (td) => log.warn('peer revoked: removed from the allowlist', { trustDomain: td }),
      stateChanged: (td, from, to) => log.info('peer state changed', { trustDomain: td, from, to }),
    },
    new RepeatLimiter({ now }),
  );
  const sync: Partial<SpireSyncObserver> = {
    synced: (server, result) => {
      if (result !== 'ok') log.warn('SPIRE sync incomplete', { server, result });
    },
    written: (server, bundle, r) =>
      log.info('wrote federated bundle to SPIRE', {
        server,
        trustDomain: bundle.trustDomain.name,
        sequence: bundle.sequence,
        ok: r.ok,
        message: r.message,
      }),
    deleted: (server, td, reason, r) =>
      r.ok
        ? log.warn('deleted federated bundle from SPIRE', { server, trustDomain: td, reason })
        : log.error('SPIRE refused to delete a federated bundle; it stays trusted there', {
            server,
            trustDomain: td,
            reason,
            code: 'ERR_SPIRE_REVOCATION_BLOCKED',
            grpcCode: r.code,
            entries: blockingEntryCount(r.message),
            message: r.message,
          }),
    drift: (server, tds) =>
      log.warn('drift: federated bundles not in the allowlist', { server, trustDomains: tds }),
    conflict: (server, tds) =>
      log.warn('SPIRE federates with these trust domains itself; leaving them alone', {
        server,
        trustDomains: tds,
      }),
  };
  return { federation, sync };
}
