import { describe, expect, it } from 'vitest';
import { authorityExpiresIn, brokerStatusFrom, toRfc3339 } from '../../../src/adapters/admin/index.js';
import type { PeerStatus as ManagerPeerStatus } from '../../../src/engine/federation/manager.js';
import type { ServerSyncStatus } from '../../../src/engine/publish/spire-sync.js';
import { DAY, makePki, T0 } from '../../support/fixtures.js';

describe('status document helpers', () => {
  it('writes instants as RFC 3339 UTC or null', () => {
    expect(toRfc3339(T0)).toBe('2030-01-01T00:00:00.000Z');
    expect(toRfc3339(undefined)).toBeNull();
    expect(toRfc3339(Number.NaN)).toBeNull();
  });

  it('computes seconds until the earliest authority expires', async () => {
    const b = await makePki('b.test', { caNotAfter: T0 + 2 * DAY });
    expect(authorityExpiresIn(b.bundle, T0)).toBe(2 * 86_400);
    expect(authorityExpiresIn(b.bundle, T0 + 3 * DAY)).toBe(-86_400);
    expect(authorityExpiresIn(undefined, T0)).toBeNull();
  });

  it('assembles /v1/status from the manager and the SPIRE syncs', async () => {
    const b = await makePki('b.test', { caNotAfter: T0 + DAY, sequence: 18446744073709551615n });
    const peers: ManagerPeerStatus[] = [
      {
        trustDomain: 'c.test',
        state: 'PENDING',
        consecutiveFailures: 1,
        longPoll: false,
        bundleOrigin: 'none',
        reason: { code: 'ERR_FETCH_CONNECT', message: 'refused' },
        lastAttempt: T0 - 1000,
      },
      {
        trustDomain: 'b.test',
        state: 'ACTIVE',
        sequence: 18446744073709551615n,
        refreshHint: 300,
        lastAttempt: T0 - 5000,
        lastSuccess: T0 - 5000,
        nextRefresh: T0 + 70_000,
        bundleOrigin: 'fetched',
        consecutiveFailures: 0,
        longPoll: true,
      },
    ];
    const servers: ServerSyncStatus[] = [
      {
        name: 'main',
        reachable: true,
        trustDomains: new Map([['b.test', { synced: true, sequence: '18446744073709551615' }]]),
        drift: ['z.test', 'x.test'],
        conflicts: [],
      },
      {
        name: 'dr',
        reachable: false,
        lastError: { code: 'ERR_SPIRE_UNAVAILABLE', message: 'connection refused' },
        trustDomains: new Map([['b.test', { synced: true, sequence: '4' }]]),
        drift: [],
        conflicts: [],
      },
    ];
    const status = brokerStatusFrom({
      trustDomain: 'a.test',
      peers,
      servers,
      bundle: (td) => (td === 'b.test' ? b.bundle : undefined),
      targetServers: (td) => (td === 'b.test' ? ['main', 'dr'] : ['main']),
      now: T0,
    });
    expect(status).toEqual({
      trustDomain: 'a.test',
      peers: [
        {
          trustDomain: 'b.test',
          state: 'ACTIVE',
          reason: null,
          sequence: '18446744073709551615',
          refreshHint: 300,
          lastAttempt: '2029-12-31T23:59:55.000Z',
          lastSuccess: '2029-12-31T23:59:55.000Z',
          nextRefresh: '2030-01-01T00:01:10.000Z',
          longPoll: true,
          bundleOrigin: 'fetched',
          sequenceFloor: null,
          authorityExpiresIn: 86_400,
          servers: [
            { name: 'main', synced: true, sequence: '18446744073709551615', error: null },
            {
              name: 'dr',
              synced: false,
              sequence: '4',
              error: { code: 'ERR_SPIRE_UNAVAILABLE', message: 'connection refused' },
            },
          ],
        },
        {
          trustDomain: 'c.test',
          state: 'PENDING',
          reason: { code: 'ERR_FETCH_CONNECT', message: 'refused' },
          sequence: null,
          refreshHint: null,
          lastAttempt: '2029-12-31T23:59:59.000Z',
          lastSuccess: null,
          nextRefresh: null,
          longPoll: false,
          bundleOrigin: 'none',
          sequenceFloor: null,
          authorityExpiresIn: null,
          servers: [{ name: 'main', synced: false, sequence: null, error: null }],
        },
      ],
      drift: [
        { server: 'main', trustDomain: 'x.test' },
        { server: 'main', trustDomain: 'z.test' },
      ],
    });
  });
});
