import type { SpireServerClient } from '../../adapters/spire/client.js';
import type { Clock } from '../../platform/clock.js';
import type { ReconcileConfig } from '../config/types.js';
import type { PublishRouting } from './routing.js';
import { spireFederationApi } from './spire-client-api.js';
import { type ManagedSetStore, SpireServerSync, type SpireSyncObserver } from './spire-sync.js';

/**
 * One {@link SpireServerSync} per SPIRE server, each asking {@link PublishRouting} for its desired
 * and retained sets, all sharing one managed-set store and one observer. Each server has its own
 * loop: one server's failures never block another's.
 */
export function createSpireSyncs(opts: {
  readonly clients: ReadonlyMap<string, SpireServerClient>;
  readonly routing: PublishRouting;
  readonly managed: ManagedSetStore;
  readonly clock: Clock;
  readonly reconcile: ReconcileConfig;
  readonly observer: Partial<SpireSyncObserver>;
  /** True while peers still await their first fetch (see {@link SpireSyncDeps.settling}). */
  readonly settling?: () => boolean;
}): Map<string, SpireServerSync> {
  const syncs = new Map<string, SpireServerSync>();
  for (const [name, client] of opts.clients) {
    syncs.set(
      name,
      new SpireServerSync(name, {
        clock: opts.clock,
        api: spireFederationApi(client),
        managed: opts.managed,
        desired: () => opts.routing.desiredFor(name),
        retained: () => opts.routing.retainedFor(name),
        enforce: opts.reconcile.enforce,
        deleteMode: opts.reconcile.deleteMode,
        observer: opts.observer,
        ...(opts.settling ? { settling: opts.settling } : {}),
      }),
    );
  }
  return syncs;
}
