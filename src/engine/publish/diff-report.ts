import type { ServerDiff } from '../../adapters/admin/status.js';
import { BrokerError } from '../../errors.js';
import type { SpireServerSync } from './spire-sync.js';

/**
 * What a reconcile would change in one SPIRE server, as `/v1/diff` and `spiffe-broker diff` show
 * it, from the sync's own {@link SpireServerSync.plan} (so the diff and the reconcile can never
 * disagree). A server that cannot be read is reported unreachable with its coded error.
 */
export async function serverDiff(sync: SpireServerSync, enforce: boolean): Promise<ServerDiff> {
  try {
    const plan = await sync.plan();
    const seq = (td: string) => plan.actual.get(td)?.sequence.toString() ?? null;
    return {
      name: sync.name,
      reachable: true,
      error: null,
      changes: [
        ...plan.toSet.map((c) => ({
          trustDomain: c.bundle.trustDomain.name,
          action: c.current ? ('update' as const) : ('create' as const),
          reason: c.current ? ('changed' as const) : ('missing' as const),
          from: c.current ? c.current.sequence.toString() : null,
          to: c.bundle.sequence.toString(),
        })),
        ...plan.revoke.map((td) => ({
          trustDomain: td,
          action: 'delete' as const,
          reason: 'revoked' as const,
          from: seq(td),
          to: null,
        })),
        ...(enforce ? plan.drift : []).map((td) => ({
          trustDomain: td,
          action: 'delete' as const,
          reason: 'drift' as const,
          from: seq(td),
          to: null,
        })),
      ],
      drift: enforce ? [] : [...plan.drift],
      conflicts: [...plan.conflicts],
    };
  } catch (err) {
    const e = err instanceof BrokerError ? err : new BrokerError('ERR_SPIRE_RPC', String(err));
    return {
      name: sync.name,
      reachable: false,
      error: { code: e.code, message: e.message },
      changes: [],
      drift: [],
      conflicts: [],
    };
  }
}
