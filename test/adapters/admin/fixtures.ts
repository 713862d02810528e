import type { BrokerStatus, ReconcileDiff } from '../../../src/adapters/admin/index.js';

/** A status document as a daemon would serve it. */
export const STATUS: BrokerStatus = {
  trustDomain: 'a.test',
  peers: [
    {
      trustDomain: 'b.test',
      state: 'ACTIVE',
      reason: null,
      sequence: '18446744073709551615',
      refreshHint: 300,
      lastAttempt: '2030-01-01T00:00:00.000Z',
      lastSuccess: '2030-01-01T00:00:00.000Z',
      nextRefresh: '2030-01-01T00:01:15.000Z',
      authorityExpiresIn: 2592000,
      servers: [{ name: 'main', synced: true, sequence: '18446744073709551615', error: null }],
    },
  ],
  drift: [{ server: 'main', trustDomain: 'x.test' }],
};

/** A diff with one update and reported drift. */
export const DIFF: ReconcileDiff = {
  trustDomain: 'a.test',
  generatedAt: '2030-01-01T00:00:00.000Z',
  enforce: false,
  servers: [
    {
      name: 'main',
      reachable: true,
      error: null,
      changes: [{ trustDomain: 'b.test', action: 'update', reason: 'changed', from: '8', to: '9' }],
      drift: ['x.test'],
      conflicts: [],
    },
  ],
};
