import { describe, expect, it } from 'vitest';
import type { ReconcileDiff } from '../../src/adapters/admin/index.js';
import { diffCommand } from '../../src/cli/diff-command.js';
import { capture } from '../adapters/admin/cli-capture.js';
import { DIFF } from '../adapters/admin/fixtures.js';

const ok = (body: unknown) => () => ({ status: 200, body: JSON.stringify(body) });

const BUSY: ReconcileDiff = {
  ...DIFF,
  enforce: true,
  servers: [
    {
      name: 'main',
      reachable: true,
      error: null,
      changes: [
        { trustDomain: 'b.test', action: 'update', reason: 'changed', from: '8', to: '9' },
        { trustDomain: 'c.test', action: 'create', reason: 'missing', from: null, to: '3' },
        { trustDomain: 'd.test', action: 'delete', reason: 'revoked', from: '5', to: null },
      ],
      drift: [],
      conflicts: ['e.test'],
    },
    {
      name: 'dr',
      reachable: false,
      error: { code: 'ERR_SPIRE_UNAVAILABLE', message: 'connection refused' },
      changes: [],
      drift: [],
      conflicts: [],
    },
  ],
};

describe('spiffe-broker diff', () => {
  it('prints the changes per server, changing nothing', async () => {
    const r = await capture(diffCommand, [], ok(BUSY));
    expect(r.code).toBe(0);
    expect(r.calls.map((c) => c.path)).toEqual(['/v1/diff']);
    expect(r.stdout).toBe(
      [
        'server main: 3 change(s)',
        '  ACTION  TRUST DOMAIN  SEQUENCE  WHY',
        '  update  b.test        8 -> 9    changed',
        '  create  c.test        - -> 3    missing',
        '  delete  d.test        5 -> -    revoked',
        "  left alone (SPIRE's own federation relationships): e.test",
        '',
        'server dr: unreachable: connection refused (ERR_SPIRE_UNAVAILABLE)',
        '',
        '3 change(s) pending; nothing was changed',
        '',
      ].join('\n'),
    );
  });

  it('reports drift that is only reported, and says when nothing would change', async () => {
    const quiet: ReconcileDiff = { ...DIFF, servers: [{ ...DIFF.servers[0]!, changes: [] }] };
    const r = await capture(diffCommand, ['--exit-code'], ok(quiet));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('server main: in sync');
    expect(r.stdout).toContain('drift, reported only (reconcile does not enforce): x.test');
    expect(r.stdout).toContain('no changes: every reachable SPIRE server holds what the broker holds');
  });

  it('exits 1 with --exit-code when changes are pending', async () => {
    expect((await capture(diffCommand, ['--exit-code'], ok(BUSY))).code).toBe(1);
    expect((await capture(diffCommand, ['--exit-code', '--json'], ok(BUSY))).code).toBe(1);
  });

  it('prints the document with --json', async () => {
    const r = await capture(diffCommand, ['--json', '--socket', '/run/admin.sock'], ok(DIFF));
    // README: every command's --json output has "ok".
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, ...DIFF });
    expect(r.calls[0]?.target).toEqual({ socketPath: '/run/admin.sock' });
  });

  it('exits 1 with the admin API’s code when the broker has no diff provider', async () => {
    const r = await capture(diffCommand, ['--json'], () => ({
      status: 501,
      body: JSON.stringify({ ok: false, code: 'ERR_API_NOT_IMPLEMENTED', message: 'no diff provider' }),
    }));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: 'ERR_API_RESPONSE' });
    expect(JSON.parse(r.stdout).message).toContain('ERR_API_NOT_IMPLEMENTED');
    const wrong = await capture(diffCommand, [], ok({ servers: 'x' }));
    expect(wrong.code).toBe(1);
    const down = await capture(diffCommand, ['--socket', '/run/nope.sock'], () => {
      throw new Error('connect ENOENT /run/nope.sock');
    });
    expect(down.stderr).toContain('hint: no broker answered at --socket /run/nope.sock');
  });

  it('refuses bad arguments with exit 2', async () => {
    expect((await capture(diffCommand, ['--apply'], ok(DIFF))).code).toBe(2);
  });
});
