import { describe, expect, it } from 'vitest';
import {
  initialPeerState,
  nextPeerState,
  type PeerEvent,
  type PeerState,
  type PeerStatus,
} from '../../../src/core/policy/index.js';

const S = 1000;
const ok = (hintSeconds = 100, empty = false): PeerEvent => ({ type: 'fetch-succeeded', hintSeconds, empty });
const fail: PeerEvent = { type: 'fetch-failed', code: 'ERR_FETCH_CONNECT', message: 'connection refused' };
const refused: PeerEvent = { type: 'refused', code: 'ERR_POLICY_SEQUENCE_ROLLBACK', message: 'rollback' };
const tick: PeerEvent = { type: 'tick' };
const removed: PeerEvent = { type: 'removed' };

/** Runs [time (s), event] steps from a fresh peer created at t=0 and returns every state. */
function run(steps: [number, PeerEvent][], opts = {}): PeerState[] {
  let s = initialPeerState(0);
  return steps.map(([t, e]) => {
    s = nextPeerState(s, e, t * S, opts);
    return s;
  });
}

// With hint 100 s and the defaults (stale after 3 hints, failing after 3 failures) the fresh
// window is 300 s after the last success.
const table: {
  name: string;
  steps: [number, PeerEvent][];
  want: [PeerStatus, string | undefined];
  opts?: object;
}[] = [
  { name: 'new peer is PENDING', steps: [[0, tick]], want: ['PENDING', undefined] },
  { name: 'first success → ACTIVE', steps: [[1, ok()]], want: ['ACTIVE', undefined] },
  {
    name: 'one failure before any success: PENDING with the reason',
    steps: [[1, fail]],
    want: ['PENDING', 'ERR_FETCH_CONNECT'],
  },
  {
    name: 'three failures, never succeeded → UNAVAILABLE (no bundle is held: not FAILING)',
    steps: [
      [1, fail],
      [2, fail],
      [3, fail],
    ],
    want: ['UNAVAILABLE', 'ERR_FETCH_CONNECT'],
  },
  {
    name: 'refusals count as failures',
    steps: [
      [1, fail],
      [2, fail],
      [3, refused],
    ],
    want: ['UNAVAILABLE', 'ERR_POLICY_SEQUENCE_ROLLBACK'],
  },
  {
    name: 'failing threshold is configurable',
    steps: [[1, fail]],
    opts: { failingAfter: 1 },
    want: ['UNAVAILABLE', 'ERR_FETCH_CONNECT'],
  },
  {
    name: 'two failures while fresh stay ACTIVE',
    steps: [
      [0, ok()],
      [10, fail],
      [20, fail],
    ],
    want: ['ACTIVE', undefined],
  },
  {
    name: 'three failures while fresh → FAILING (the bundle is still current)',
    steps: [
      [0, ok()],
      [10, fail],
      [20, fail],
      [30, fail],
    ],
    want: ['FAILING', 'ERR_FETCH_CONNECT'],
  },
  {
    name: 'fresh until just under 3 hints',
    steps: [
      [0, ok()],
      [299.999, tick],
    ],
    want: ['ACTIVE', undefined],
  },
  {
    name: 'STALE at 3 hints without success',
    steps: [
      [0, ok()],
      [300, tick],
    ],
    want: ['STALE', 'ERR_PEER_STALE'],
  },
  {
    name: 'stale window is configurable',
    steps: [
      [0, ok()],
      [100, tick],
    ],
    opts: { staleAfterHints: 1 },
    want: ['STALE', 'ERR_PEER_STALE'],
  },
  {
    name: 'stale window follows the last hint',
    steps: [
      [0, ok(10)],
      [31, tick],
    ],
    want: ['STALE', 'ERR_PEER_STALE'],
  },
  {
    name: 'stale with few failures stays STALE',
    steps: [
      [0, ok()],
      [250, fail],
      [310, fail],
    ],
    want: ['STALE', 'ERR_PEER_STALE'],
  },
  {
    name: 'a held bundle past the window is STALE even while failing (still trusted)',
    steps: [
      [0, ok()],
      [250, fail],
      [300, fail],
      [310, fail],
    ],
    want: ['STALE', 'ERR_PEER_STALE'],
  },
  {
    name: 'success recovers from FAILING',
    steps: [
      [1, fail],
      [2, fail],
      [3, fail],
      [4, ok()],
    ],
    want: ['ACTIVE', undefined],
  },
  {
    name: 'success recovers from STALE',
    steps: [
      [0, ok()],
      [400, tick],
      [401, ok()],
    ],
    want: ['ACTIVE', undefined],
  },
  {
    name: 'accepted empty bundle → REVOKED',
    steps: [
      [0, ok()],
      [10, ok(100, true)],
    ],
    want: ['REVOKED', 'ERR_PEER_REVOKED_ALL_KEYS'],
  },
  {
    name: 'revoked keys survive failures and time',
    steps: [
      [0, ok(100, true)],
      [10, fail],
      [20, fail],
      [30, fail],
      [1000, tick],
    ],
    want: ['REVOKED', 'ERR_PEER_REVOKED_ALL_KEYS'],
  },
  {
    name: 'new keys after revocation → ACTIVE',
    steps: [
      [0, ok(100, true)],
      [10, ok()],
    ],
    want: ['ACTIVE', undefined],
  },
  {
    name: 'removed → REVOKED',
    steps: [
      [0, ok()],
      [5, removed],
    ],
    want: ['REVOKED', 'ERR_PEER_REMOVED'],
  },
  {
    name: 'removed is terminal',
    steps: [
      [0, ok()],
      [5, removed],
      [6, ok()],
      [7, fail],
      [1000, tick],
    ],
    want: ['REVOKED', 'ERR_PEER_REMOVED'],
  },
  {
    name: 'removed while pending',
    steps: [
      [1, fail],
      [2, removed],
    ],
    want: ['REVOKED', 'ERR_PEER_REMOVED'],
  },
];

describe('nextPeerState', () => {
  it.each(table)('$name', ({ steps, want, opts }) => {
    const last = run(steps, opts).at(-1)!;
    expect([last.status, last.reason?.code]).toEqual(want);
  });

  it('records since only on a status change, and counters', () => {
    const [a, b, c, d] = run([
      [1, ok()],
      [2, ok()],
      [3, fail],
      [400, tick],
    ]);
    expect(a!.since).toBe(1 * S);
    expect(b!.since).toBe(1 * S);
    expect(c).toMatchObject({
      since: 1 * S,
      consecutiveFailures: 1,
      lastFailureAt: 3 * S,
      lastSuccessAt: 2 * S,
    });
    expect(d).toMatchObject({ status: 'STALE', since: 400 * S });
    expect(d!.reason!.message).toContain('no successful fetch for 398 s');
    expect(d!.reason!.message).toContain('last error ERR_FETCH_CONNECT');
  });

  it('keeps the last error after recovering, but clears the reason', () => {
    const s = run([
      [1, fail],
      [2, ok()],
    ]).at(-1)!;
    expect(s.reason).toBeUndefined();
    expect('reason' in s).toBe(false);
    expect(s.lastError?.code).toBe('ERR_FETCH_CONNECT');
    expect(s.consecutiveFailures).toBe(0);
  });

  it('never mutates the previous state', () => {
    const s0 = initialPeerState(0);
    const frozen = Object.freeze({ ...s0 });
    const s1 = nextPeerState(frozen, fail, 1);
    expect(frozen.consecutiveFailures).toBe(0);
    expect(s1.consecutiveFailures).toBe(1);
  });

  it('refuses a non-positive hint (programming error)', () => {
    expect(() => nextPeerState(initialPeerState(0), ok(0), 1)).toThrow(TypeError);
  });
});

describe('the stale window is capped whatever hint the peer advertises', () => {
  it('a peer with a ten-year hint is STALE after 3 days of silence by default', () => {
    const tenYears = 10 * 365 * 86_400;
    const [, fresh, stale] = run([
      [0, ok(tenYears)],
      [3 * 86_400 - 1, tick],
      [3 * 86_400, tick],
    ]);
    expect(fresh!.status).toBe('ACTIVE');
    expect(stale!.status).toBe('STALE');
    expect(stale!.reason?.message).toBe('no successful fetch for 259200 s (stale after 3 × 86400 s)');
  });

  it('maxHintSeconds configures the cap', () => {
    const [, stale] = run(
      [
        [0, ok(86_400)],
        [3 * 3600, tick],
      ],
      { maxHintSeconds: 3600 },
    );
    expect(stale!.status).toBe('STALE');
  });
});
