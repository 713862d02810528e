import { describe, expect, it } from 'vitest';
import type { BrokerMetrics } from '../../src/adapters/metrics/broker-metrics.js';
import { AllowlistControl } from '../../src/daemon/allowlist-control.js';
import type { Allowlist } from '../../src/engine/config/types.js';
import { DEFAULT_MAX_IDLE, IdleConnections } from '../../src/engine/federation/idle-connections.js';
import type { FederationManager } from '../../src/engine/federation/manager.js';
import { nullLogger } from '../../src/platform/logger.js';

/** An allowlist of `n` peers; the control reads only their count and the version. */
const allowlist = (n: number, version: string): Allowlist =>
  ({ peers: Array.from({ length: n }, () => ({})), version }) as unknown as Allowlist;

function control(connections: IdleConnections) {
  const applied: string[] = [];
  const manager = {
    allowlist: undefined as Allowlist | undefined,
    async apply(next: Allowlist) {
      applied.push(next.version);
      manager.allowlist = next;
      return { added: [], removed: [], changed: [] };
    },
  };
  const metrics = { setPeerState: () => undefined, allowlistReloaded: () => undefined };
  const c = new AllowlistControl({
    manager: manager as unknown as FederationManager,
    metrics: metrics as unknown as BrokerMetrics,
    logger: nullLogger,
    clock: { now: () => 0 } as never,
    audit: () => undefined,
    connections,
  });
  return { c, applied };
}

describe('AllowlistControl', () => {
  it("sizes an 'auto' connection pool to each allowlist it applies", async () => {
    const pool = new IdleConnections({ maxIdle: 'auto' });
    const { c, applied } = control(pool);
    await c.apply(allowlist(5000, 'v1'));
    expect(pool.maxIdle).toBe(5000);
    await c.apply(allowlist(20, 'v2'));
    expect(pool.maxIdle).toBe(DEFAULT_MAX_IDLE);
    expect(applied).toEqual(['v1', 'v2']);
  });

  it('leaves a configured maxIdle alone', async () => {
    const pool = new IdleConnections({ maxIdle: 64 });
    const { c } = control(pool);
    await c.apply(allowlist(5000, 'v1'));
    expect(pool.maxIdle).toBe(64);
  });
});
