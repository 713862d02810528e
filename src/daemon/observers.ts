import type { AuditTrail } from '../adapters/audit/audit-trail.js';
import { auditObservers } from '../adapters/audit/observers.js';
import type { BrokerMetrics, PropagationTracker } from '../adapters/metrics/broker-metrics.js';
import type { FederationObserver } from '../engine/federation/manager.js';
import type { SpireSyncObserver } from '../engine/publish/spire-sync.js';
import type { Logger } from '../platform/logger.js';
import { composeObservers } from '../platform/observers.js';
import { logObservers } from './log-observers.js';

/**
 * Everyone who hears about federation and SPIRE sync events — the log, the audit trail, the
 * metrics (with propagation tracking) and any extra observer a caller passes — composed into one
 * observer each; a throwing observer is logged and never stops the others.
 */
export function brokerObservers(opts: {
  readonly logger: Logger;
  readonly now: () => number;
  readonly metrics: BrokerMetrics;
  readonly propagation: PropagationTracker;
  readonly audit: () => AuditTrail | undefined;
  readonly enforce: boolean;
  /** Extra observers (tests, the crash child). */
  readonly extraFederation?: Partial<FederationObserver> | undefined;
  readonly extraSync?: Partial<SpireSyncObserver> | undefined;
}): { federation: Partial<FederationObserver>; sync: Partial<SpireSyncObserver> } {
  const { logger: log, metrics, propagation } = opts;
  const logs = logObservers(log, opts.now);
  const audit = auditObservers({
    trail: opts.audit,
    enforce: opts.enforce,
    now: opts.now,
    onWriteFailure: (record, err) => {
      metrics.auditWriteFailed();
      log.error('audit write failed', { record, error: err instanceof Error ? err.message : String(err) });
    },
  });
  const failed = (err: unknown, event: string) => log.error('observer failed', { event, error: String(err) });
  return {
    federation: composeObservers<FederationObserver>(
      [logs.federation, audit.federation, metrics.federationObserver(propagation), opts.extraFederation],
      failed,
    ),
    sync: composeObservers<SpireSyncObserver>(
      [logs.sync, audit.sync, metrics.spireSyncObserver(propagation), opts.extraSync],
      failed,
    ),
  };
}
