import { beforeAll, describe, expect, it } from 'vitest';
import { buildAdminApp } from '../../../src/adapters/admin/index.js';
import { BrokerMetrics, createMetricsRegistry } from '../../../src/adapters/metrics/index.js';
import type { TrustDomain } from '../../../src/core/spiffeid/index.js';
import { PolicyError } from '../../../src/errors.js';
import { makePki, T0, type TestPki } from '../../support/fixtures.js';
import { STATUS } from './fixtures.js';

// App-level tests of POST /v1/peers/{trustDomain}/reset-sequence: the operator's way to let a
// rolled-back sequence in, so every refusal path must hold at the HTTP layer too.

let peer: TestPki;

beforeAll(async () => {
  peer = await makePki('b.test', { sequence: 9n });
});

type Options = Parameters<typeof buildAdminApp>[0];

/** Mutating routes need the admin bearer token (issue 16 item 3); these tests present it. */
const TOKEN = 't'.repeat(43);
const AUTH = { authorization: `Bearer ${TOKEN}` };

function app(over: Partial<Options> = {}) {
  return buildAdminApp({
    status: () => STATUS,
    ready: () => ({ ready: true, reasons: [] }),
    metrics: new BrokerMetrics({ registry: createMetricsRegistry(), clock: { now: () => T0 } }),
    bundles: () => [peer.bundle],
    adminToken: TOKEN,
    ...over,
  });
}

/** A provider that knows only b.test and records what it was asked. */
function resetter(calls: string[]): NonNullable<Options['resetSequence']> {
  return async (td: TrustDomain) => {
    calls.push(td.name);
    if (td.name !== 'b.test') {
      throw new PolicyError('ERR_POLICY_NOT_ALLOWLISTED', `trust domain ${td.name} is not in the allowlist`);
    }
    return { previousSequence: '9' };
  };
}

const post = (a: ReturnType<typeof app>, td: string) =>
  a.inject({ method: 'POST', url: `/v1/peers/${encodeURIComponent(td)}/reset-sequence`, headers: AUTH });

describe('POST /v1/peers/{trustDomain}/reset-sequence', () => {
  it('resets an allowlisted peer and says what the sequence was', async () => {
    const calls: string[] = [];
    const res = await post(app({ resetSequence: resetter(calls) }), 'b.test');
    expect([res.statusCode, res.json(), res.headers['cache-control']]).toEqual([
      200,
      { ok: true, trustDomain: 'b.test', previousSequence: '9' },
      'no-store',
    ]);
    expect(calls).toEqual(['b.test']);
  });

  it('refuses a name that is not a trust domain with 400, without calling the provider', async () => {
    const calls: string[] = [];
    const a = app({ resetSequence: resetter(calls) });
    for (const bad of ['B..test', 'b.test:443', 'spiffe://b.test/path', 'bad name', '%00']) {
      const res = await post(a, bad);
      expect([bad, res.statusCode, res.json()]).toEqual([
        bad,
        400,
        { ok: false, code: 'ERR_API_BAD_REQUEST', message: expect.stringMatching(/^not a trust domain/) },
      ]);
    }
    expect(calls).toEqual([]);
  });

  it('answers 404 ERR_API_NOT_FOUND for a trust domain that is not allowlisted', async () => {
    const calls: string[] = [];
    const res = await post(app({ resetSequence: resetter(calls) }), 'unknown.test');
    expect([res.statusCode, res.json()]).toEqual([
      404,
      {
        ok: false,
        code: 'ERR_API_NOT_FOUND',
        message: 'trust domain unknown.test is not in the allowlist',
      },
    ]);
    expect(calls).toEqual(['unknown.test']);
  });

  it('answers 501 ERR_API_NOT_IMPLEMENTED when the broker has no reset provider', async () => {
    const res = await post(app(), 'b.test');
    expect([res.statusCode, res.json()]).toMatchObject([501, { ok: false, code: 'ERR_API_NOT_IMPLEMENTED' }]);
  });

  it('is POST only: a GET resets nothing', async () => {
    const calls: string[] = [];
    const res = await app({ resetSequence: resetter(calls) }).inject({
      method: 'GET',
      url: '/v1/peers/b.test/reset-sequence',
      headers: AUTH,
    });
    expect(res.statusCode).toBe(404);
    expect(calls).toEqual([]);
  });

  it('reports any other provider failure as 500 without resetting', async () => {
    const res = await post(
      app({
        resetSequence: async () => {
          throw new Error('state directory unwritable');
        },
      }),
      'b.test',
    );
    expect([res.statusCode, res.json()]).toEqual([
      500,
      { ok: false, code: 'ERR_API_INTERNAL', message: 'state directory unwritable' },
    ]);
  });
});
