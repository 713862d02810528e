import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type BrokerStatus, buildAdminApp, runAdmin } from '../../src/adapters/admin/index.js';
import { formatDuration, statusCommand } from '../../src/cli/status-command.js';
import { capture } from '../adapters/admin/cli-capture.js';
import { STATUS } from '../adapters/admin/fixtures.js';

const ok = (body: unknown) => () => ({ status: 200, body: JSON.stringify(body) });

describe('spiffe-broker status', () => {
  it('prints a table of peers with relative times, synced servers and drift', async () => {
    const r = await capture(statusCommand, [], ok(STATUS));
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('trust domain a.test: 1 peer(s)');
    expect(lines[2]).toMatch(
      /^TRUST DOMAIN +STATE +SEQUENCE +LAST SUCCESS +NEXT REFRESH +EXPIRES IN +SERVERS +REASON$/,
    );
    expect(lines[3]?.split(/ {2,}/)).toEqual([
      'b.test',
      'ACTIVE',
      '18446744073709551615',
      '30s ago',
      'in 45s',
      '30d',
      '1/1',
      '-',
    ]);
    expect(r.stdout).toContain(
      'drift (federated bundles no allowlist entry or SPIRE relationship accounts for):\n  main: x.test',
    );
    expect(r.calls).toEqual([{ target: { url: new URL('http://127.0.0.1:8089') }, path: '/v1/status' }]);
  });

  it('shows reasons, SPIRE write failures and never-fetched peers', async () => {
    const status: BrokerStatus = {
      trustDomain: 'a.test',
      peers: [
        {
          ...STATUS.peers[0]!,
          state: 'FAILING',
          reason: { code: 'ERR_FETCH_TLS', message: 'certificate verify failed' },
          authorityExpiresIn: -7200,
          nextRefresh: '2030-01-01T00:00:00.000Z',
          servers: [
            { name: 'main', synced: true, sequence: '3', error: null },
            {
              name: 'dr',
              synced: false,
              sequence: null,
              error: { code: 'ERR_SPIRE_BATCH_ITEM', message: 'denied' },
            },
          ],
        },
        {
          trustDomain: 'c.test',
          state: 'PENDING',
          reason: null,
          sequence: null,
          refreshHint: null,
          lastAttempt: null,
          lastSuccess: null,
          nextRefresh: null,
          authorityExpiresIn: null,
          servers: [],
        },
      ],
      drift: [],
    };
    const r = await capture(statusCommand, [], ok(status));
    const rows = r.stdout
      .split('\n')
      .slice(3, 5)
      .map((l) => l.split(/ {2,}/));
    expect(rows[0]).toEqual([
      'b.test',
      'FAILING',
      '18446744073709551615',
      '30s ago',
      'due',
      'expired 2h ago',
      '1/2',
      'ERR_FETCH_TLS',
    ]);
    expect(rows[1]).toEqual(['c.test', 'PENDING', '-', '-', '-', '-', '0/0', '-']);
    expect(r.stdout).toContain('reasons:\n  b.test: certificate verify failed (ERR_FETCH_TLS)');
    expect(r.stdout).toContain('SPIRE write failures:\n  b.test on dr: denied (ERR_SPIRE_BATCH_ITEM)');
    expect(r.stdout).not.toContain('drift');
  });

  it('prints the document with --json', async () => {
    const r = await capture(statusCommand, ['--json'], ok(STATUS));
    // README: every command's --json output has "ok".
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, ...STATUS });
  });

  it('shows a held long-poll as "held (long-poll)", not "due" forever', async () => {
    const peer = STATUS.peers[0]!;
    const held: BrokerStatus = {
      ...STATUS,
      peers: [
        { ...peer, trustDomain: 'b.test', nextRefresh: '2030-01-01T00:00:01.000Z', longPoll: true },
        { ...peer, trustDomain: 'c.test', nextRefresh: '2030-01-01T00:00:01.000Z', longPoll: false },
        { ...peer, trustDomain: 'd.test', nextRefresh: '2030-01-01T00:01:00.000Z', longPoll: true },
      ],
    };
    const r = await capture(statusCommand, [], ok(held));
    const rows = r.stdout
      .split('\n')
      .slice(3, 6)
      .map((l) => l.split(/ {2,}/));
    expect(rows.map((row) => [row[0], row[4]])).toEqual([
      ['b.test', 'held (long-poll)'],
      ['c.test', 'due'],
      ['d.test', 'in 30s'],
    ]);
  });

  it('a broker it cannot reach gets a hint at --admin / --socket (text and JSON)', async () => {
    const refuse = () => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:8089');
    };
    const text = await capture(statusCommand, [], refuse);
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(
      /\(ERR_API_CONNECT\)\nhint: no broker answered at the default http:\/\/127\.0\.0\.1:8089: .*--admin .*--socket/,
    );
    const json = await capture(statusCommand, ['--json', '--admin', 'http://127.0.0.1:9'], refuse);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      code: 'ERR_API_CONNECT',
      hint: expect.stringContaining('no broker answered at --admin http://127.0.0.1:9'),
    });
    // Something that is not the admin API (a bundle endpoint answering HTML).
    const html = await capture(statusCommand, ['--admin', 'http://127.0.0.1:8443'], () => ({
      status: 200,
      body: '<html>',
    }));
    expect(html.stderr).toContain("hint: --admin http://127.0.0.1:8443 is not a broker's admin API");
  });

  it('reads the admin API from --socket, --admin or $SPIFFE_BROKER_ADMIN', async () => {
    const s = await capture(statusCommand, ['--socket', '/run/broker/admin.sock'], ok(STATUS));
    expect(s.calls[0]?.target).toEqual({ socketPath: '/run/broker/admin.sock' });
    const a = await capture(statusCommand, ['--admin', 'http://127.0.0.1:9999/'], ok(STATUS));
    expect(a.calls[0]?.target).toEqual({ url: new URL('http://127.0.0.1:9999/') });
    const e = await capture(statusCommand, [], ok(STATUS), { SPIFFE_BROKER_ADMIN: 'http://[::1]:8089' });
    expect(e.calls[0]?.target).toEqual({ url: new URL('http://[::1]:8089') });
  });

  it.each([
    [['--admin', 'http://x', '--socket', '/s']],
    [['--admin', 'https://127.0.0.1:8089']],
    [['--admin', 'not a url']],
    [['--verbose']],
    [['extra']],
  ])('refuses %j as a usage error (exit 2)', async (args) => {
    const r = await capture(statusCommand, args, ok(STATUS));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: .*\(ERR_USAGE\)/);
    expect(r.calls).toEqual([]);
  });

  it('exits 1 with a coded error when the admin API cannot be read', async () => {
    const down = await capture(statusCommand, ['--json'], () => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:8089');
    });
    expect(down.code).toBe(1);
    expect(JSON.parse(down.stdout)).toMatchObject({ ok: false, code: 'ERR_API_CONNECT' });
    const failing = await capture(statusCommand, [], () => ({
      status: 500,
      body: JSON.stringify({ ok: false, code: 'ERR_API_INTERNAL', message: 'manager not started' }),
    }));
    expect(failing.code).toBe(1);
    expect(failing.stderr).toContain(
      'answered HTTP 500: manager not started (ERR_API_INTERNAL) (ERR_API_RESPONSE)',
    );
    const wrong = await capture(statusCommand, [], ok({ hello: 1 }));
    expect(wrong.stderr).toContain('ERR_API_RESPONSE');
    const html = await capture(statusCommand, [], () => ({ status: 200, body: '<html>' }));
    expect(html.stderr).toContain('not JSON');
  });

  it('reads a real admin API over its Unix socket (longPoll passes its response schema)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sb-status-'));
    const path = join(dir, 'admin.sock');
    const held: BrokerStatus = { ...STATUS, peers: [{ ...STATUS.peers[0]!, longPoll: true }] };
    const app = buildAdminApp({
      status: () => held,
      ready: () => ({ ready: true, reasons: [] }),
      metrics: { expose: async () => ({ contentType: 'text/plain', body: '' }) },
      bundles: () => [],
    });
    const stop = new AbortController();
    let up!: () => void;
    const listening = new Promise<void>((r) => {
      up = r;
    });
    const running = runAdmin(app, { listen: { path }, signal: stop.signal, onListening: () => up() });
    await listening;
    const r = await capture(statusCommand, ['--socket', path, '--json']);
    stop.abort();
    await running;
    await rm(dir, { recursive: true, force: true });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, ...held });
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [59, '59s'],
    [60, '1m'],
    [250, '4m 10s'],
    [3600, '1h'],
    [11_520, '3h 12m'],
    [86_400, '1d'],
    [2_588_400, '29d 23h'],
  ])('%d s is %s', (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });
});
