import { diffBundles } from '../../core/bundle/diff.js';
import type { FederationObserver } from '../../engine/federation/manager.js';
import type { SpireSyncObserver } from '../../engine/publish/spire-sync.js';
import type { AuditTrail } from './audit-trail.js';
import { limitRepeatedReports, RepeatLimiter } from './repeat-limiter.js';

/** What {@link auditObservers} needs. */
export interface AuditObserverOptions {
  /** The open audit trail, or undefined while none is (before start, after stop): nothing is written then. */
  readonly trail: () => AuditTrail | undefined;
  /** A record could not be written (metrics and an error log: the trail itself cannot say it). */
  readonly onWriteFailure: (record: string, error: unknown) => void;
  /** Whether drift is repaired (`reconcile.enforce`), recorded with each drift record. */
  readonly enforce: boolean;
  /** For the repeat limiter of refusals and failures. */
  readonly now: () => number;
}

/**
 * The audit trail's view of the broker (docs/audit.md): every accepted bundle with its diff,
 * every refusal (identical ones per peer and code limited to one record a minute, which says how
 * many it stands for) and revocation; every SPIRE write and deletion with its result and code;
 * every drift found.
 */
export function auditObservers(opts: AuditObserverOptions): {
  readonly federation: Partial<FederationObserver>;
  readonly sync: Partial<SpireSyncObserver>;
} {
  const write = (record: string, append: (trail: AuditTrail) => Promise<unknown>): void => {
    const trail = opts.trail();
    if (!trail) return;
    append(trail).catch((err: unknown) => opts.onWriteFailure(record, err));
  };
  const federation = limitRepeatedReports<
    Parameters<FederationObserver['refused']>[0],
    Partial<FederationObserver>
  >(
    {
      accepted: (peer, bundle, previous) =>
        write('bundle-accepted', (t) =>
          t.bundleAccepted({
            trustDomain: peer.trustDomain,
            sequence: bundle.sequence,
            diff: diffBundles(previous, bundle),
          }),
        ),
      refused: (peer, error) =>
        write('bundle-refused', (t) =>
          t.bundleRefused({ trustDomain: peer.trustDomain, code: error.code, message: error.message }),
        ),
      revoked: (td) =>
        write('revocation', (t) =>
          t.revocation({ trustDomain: td, code: 'ERR_PEER_REMOVED', message: 'removed from the allowlist' }),
        ),
    },
    new RepeatLimiter({ now: opts.now }),
  );
  const sync: Partial<SpireSyncObserver> = {
    written: (server, bundle, r) =>
      write('spire-write', (t) =>
        t.spireWrite({
          server,
          trustDomain: bundle.trustDomain,
          operation: 'set',
          result: r.ok ? 'ok' : 'error',
          ...(r.ok ? {} : { code: String(r.code), message: r.message }),
        }),
      ),
    deleted: (server, td, reason, r) =>
      write('spire-write', (t) =>
        t.spireWrite({
          server,
          trustDomain: td,
          operation: 'delete',
          result: r.ok ? 'ok' : 'error',
          ...(r.ok ? {} : { code: 'ERR_SPIRE_REVOCATION_BLOCKED' }),
          message: `${reason}: ${r.message}`,
        }),
      ),
    drift: (server, tds) => {
      for (const td of tds) {
        write('drift', (t) =>
          t.drift({
            server,
            trustDomain: td,
            detail: 'federated bundle not named by the allowlist',
            repaired: opts.enforce,
          }),
        );
      }
    },
  };
  return { federation, sync };
}
