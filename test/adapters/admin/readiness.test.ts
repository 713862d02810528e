import { describe, expect, it } from 'vitest';
import { readinessFrom } from '../../../src/adapters/admin/status.js';
import type { ServerSyncStatus } from '../../../src/engine/publish/spire-sync.js';

const server = (
  name: string,
  tds: Record<string, { synced: boolean; error?: { code: string; message: string } }>,
) =>
  ({
    name,
    reachable: true,
    trustDomains: new Map(Object.entries(tds)),
    drift: [],
    conflicts: [],
  }) as ServerSyncStatus;

describe('readinessFrom', () => {
  it('a restored bundle SPIRE already holds identically counts as pushed (found by the container suite)', () => {
    const r = readinessFrom({
      allowlistLoaded: true,
      leader: true,
      servers: [server('main', { 'a.test': { synced: true } }), server('dr', {})],
      mustPush: [
        ['main', 'a.test'],
        ['dr', 'a.test'],
      ],
      targetsOf: () => ['main', 'dr'],
    });
    expect(r.satisfied).toEqual([['main', 'a.test']]);
    expect(r.reasons).toEqual(['last-known-good bundle of a.test not yet written to SPIRE server dr']);
  });

  it('a blocked revocation makes the leader not ready; a follower only needs the allowlist', () => {
    const servers = [
      server('main', {
        'gone.test': {
          synced: false,
          error: { code: 'ERR_SPIRE_REVOCATION_BLOCKED', message: '1 registration entry' },
        },
      }),
    ];
    const leader = readinessFrom({
      allowlistLoaded: true,
      leader: true,
      servers,
      mustPush: [],
      targetsOf: () => [],
    });
    expect(leader.reasons).toEqual([
      'revocation of gone.test blocked on SPIRE server main: 1 registration entry',
    ]);
    const follower = readinessFrom({
      allowlistLoaded: true,
      leader: false,
      servers,
      mustPush: [],
      targetsOf: () => [],
    });
    expect(follower.reasons).toEqual([]);
    expect(
      readinessFrom({ allowlistLoaded: false, leader: false, servers, mustPush: [], targetsOf: () => [] })
        .reasons,
    ).toEqual(['allowlist not loaded yet']);
  });
});
