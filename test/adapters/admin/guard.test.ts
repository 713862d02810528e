/**
 * Issue 16 item 3: a browser on the broker's host (cross-site POST, DNS rebinding) and other local
 * users must not be able to use the loopback admin API; the health listener and the verify API
 * answer only their own Host names on loopback.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runApp } from '../../../src/adapters/admin/http.js';
import {
  buildAdminApp,
  buildHealthApp,
  defaultAllowedHosts,
  ensureAdminToken,
  parseHostHeader,
  runAdmin,
} from '../../../src/adapters/admin/index.js';
import { BrokerMetrics, createMetricsRegistry } from '../../../src/adapters/metrics/index.js';
import { buildVerifyApiApp } from '../../../src/adapters/verify-api/index.js';
import { resetSequenceCommand } from '../../../src/cli/reset-sequence-command.js';
import type { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { PolicyError } from '../../../src/errors.js';
import { makePki, T0, type TestPki } from '../../support/fixtures.js';
import { DIFF, STATUS } from './fixtures.js';

const TOKEN = 'Zm9yLXRlc3RzLW9ubHktMDEyMzQ1Njc4OWFiY2RlZmdo';

let local: TestPki;
let peer: TestPki;
beforeAll(async () => {
  [local, peer] = await Promise.all([makePki('a.test'), makePki('b.test', { sequence: 9n })]);
});

interface Calls {
  resets: string[];
  reconciles: number;
}

function adminApp(calls: Calls, over: Partial<Parameters<typeof buildAdminApp>[0]> = {}): FastifyInstance {
  return buildAdminApp({
    status: () => STATUS,
    ready: () => ({ ready: true, reasons: [] }),
    metrics: new BrokerMetrics({ registry: createMetricsRegistry(), clock: { now: () => T0 } }),
    bundles: () => [peer.bundle, local.bundle],
    diff: async () => DIFF,
    reconcile: async () => {
      calls.reconciles++;
    },
    resetSequence: async (td: TrustDomain) => {
      if (td.name !== 'b.test') {
        throw new PolicyError('ERR_POLICY_NOT_ALLOWLISTED', `${td.name} is not allowlisted`);
      }
      calls.resets.push(td.name);
      return { previousSequence: '9' };
    },
    adminToken: TOKEN,
    ...over,
  });
}

const bearer = { authorization: `Bearer ${TOKEN}` };

describe('mutating admin routes need the admin token', () => {
  it('refuses reset-sequence and reconcile without the token (401 ERR_API_UNAUTHORIZED) and runs nothing', async () => {
    const calls: Calls = { resets: [], reconciles: 0 };
    const app = adminApp(calls);
    for (const url of ['/v1/peers/b.test/reset-sequence', '/v1/reconcile']) {
      const res = await app.inject({ method: 'POST', url });
      expect(res.statusCode, url).toBe(401);
      expect(res.json()).toMatchObject({ ok: false, code: 'ERR_API_UNAUTHORIZED' });
      expect(res.headers['www-authenticate']).toMatch(/^Bearer /);
      const wrong = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${TOKEN}x` } });
      expect(wrong.statusCode, url).toBe(401);
      const basic = await app.inject({ method: 'POST', url, headers: { authorization: `Basic ${TOKEN}` } });
      expect(basic.statusCode, url).toBe(401);
    }
    expect(calls).toEqual({ resets: [], reconciles: 0 });
    const ok = await app.inject({ method: 'POST', url: '/v1/peers/b.test/reset-sequence', headers: bearer });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ ok: true, trustDomain: 'b.test', previousSequence: '9' });
    expect((await app.inject({ method: 'POST', url: '/v1/reconcile', headers: bearer })).json()).toEqual({
      ok: true,
    });
    expect(calls).toEqual({ resets: ['b.test'], reconciles: 1 });
    // Reads need no token (status, bundles, metrics are for local tooling).
    expect((await app.inject('/v1/status')).statusCode).toBe(200);
  });

  it('refuses every mutating route when started without a token', async () => {
    const calls: Calls = { resets: [], reconciles: 0 };
    const noToken = buildAdminApp({
      status: () => STATUS,
      ready: () => ({ ready: true, reasons: [] }),
      metrics: { expose: async () => ({ contentType: 'text/plain', body: '' }) },
      bundles: () => [],
      reconcile: async () => {
        calls.reconciles++;
      },
    });
    const res = await noToken.inject({ method: 'POST', url: '/v1/reconcile', headers: bearer });
    expect(res.statusCode).toBe(401);
    expect(res.json().message).toMatch(/without an admin token/);
    expect(calls.reconciles).toBe(0);
    expect(() => adminApp(calls, { adminToken: 'short' })).toThrow(TypeError);
  });

  it('answers reset-sequence: bad name 400, unknown peer 404, no provider 501', async () => {
    const calls: Calls = { resets: [], reconciles: 0 };
    const app = adminApp(calls);
    const post = (url: string, a = app) => a.inject({ method: 'POST', url, headers: bearer });
    const bad = await post('/v1/peers/Not_A_Domain!/reset-sequence');
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'ERR_API_BAD_REQUEST' });
    const unknown = await post('/v1/peers/zz.test/reset-sequence');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ code: 'ERR_API_NOT_FOUND' });
    const bare = buildAdminApp({
      status: () => STATUS,
      ready: () => ({ ready: true, reasons: [] }),
      metrics: { expose: async () => ({ contentType: 'text/plain', body: '' }) },
      bundles: () => [],
      adminToken: TOKEN,
    });
    const none = await post('/v1/peers/b.test/reset-sequence', bare);
    expect(none.statusCode).toBe(501);
    expect(none.json()).toMatchObject({ code: 'ERR_API_NOT_IMPLEMENTED' });
    expect(calls.resets).toEqual([]);
  });
});

describe('cross-site requests from a browser', () => {
  it.each([
    ['an Origin of another site', { origin: 'https://evil.example' }],
    ['an Origin of the admin API itself', { origin: 'http://127.0.0.1:8089' }],
    ['the opaque Origin of a sandboxed page', { origin: 'null' }],
    ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site: same-site', { 'sec-fetch-site': 'same-site' }],
  ])('refuses a POST carrying %s, even with the token (403 ERR_API_CROSS_SITE)', async (_n, headers) => {
    const calls: Calls = { resets: [], reconciles: 0 };
    const app = adminApp(calls);
    for (const url of ['/v1/peers/b.test/reset-sequence', '/v1/reconcile']) {
      const res = await app.inject({ method: 'POST', url, headers: { ...bearer, ...headers } });
      expect(res.statusCode, url).toBe(403);
      expect(res.json()).toMatchObject({ ok: false, code: 'ERR_API_CROSS_SITE' });
    }
    expect(calls).toEqual({ resets: [], reconciles: 0 });
  });

  it('accepts Sec-Fetch-Site none or same-origin without an Origin (a user agent, not a page)', async () => {
    const calls: Calls = { resets: [], reconciles: 0 };
    const app = adminApp(calls);
    for (const site of ['none', 'same-origin']) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/reconcile',
        headers: { ...bearer, 'sec-fetch-site': site },
      });
      expect(res.statusCode, site).toBe(200);
    }
  });
});

/** One raw HTTP/1.1 request to a listener with a chosen Host header. */
function call(
  port: number,
  path: string,
  host: string,
  method = 'GET',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { ...headers, host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** An HTTP/1.0 request with no Host header at all. */
function noHost(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.end(`GET ${path} HTTP/1.0\r\n\r\n`));
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      text += d;
    });
    s.on('end', () => resolve(text));
    s.on('error', reject);
  });
}

async function listenOn(
  app: FastifyInstance,
  stop: AbortController,
): Promise<{ port: number; done: Promise<void> }> {
  let port = 0;
  let done!: Promise<void>;
  const up = new Promise<void>((resolve) => {
    done = runApp(app, {
      listen: { host: '127.0.0.1', port: 0 },
      signal: stop.signal,
      onListening: (a) => {
        port = Number(new URL(a).port);
        resolve();
      },
    });
  });
  await up;
  return { port, done };
}

describe('DNS rebinding: every endpoint answers only its own Host names', () => {
  const stop = new AbortController();
  let port: number;
  let running: Promise<void>;
  const calls: Calls = { resets: [], reconciles: 0 };
  beforeAll(async () => {
    const app = adminApp(calls);
    let resolve!: () => void;
    const up = new Promise<void>((r) => {
      resolve = r;
    });
    running = runAdmin(app, {
      listen: { host: '127.0.0.1', port: 0 },
      signal: stop.signal,
      onListening: (a) => {
        port = Number(new URL(a).port);
        resolve();
      },
    });
    await up;
  });
  afterAll(async () => {
    stop.abort();
    await running;
  });

  const GETS = [
    '/healthz',
    '/readyz',
    '/metrics',
    '/v1/status',
    '/v1/bundles',
    '/v1/bundles/b.test',
    '/v1/diff',
  ];

  it('refuses a foreign Host on every route with 421 ERR_API_HOST (GET and POST, token or not)', async () => {
    for (const host of [
      'evil.example',
      `evil.example:${port}`,
      `127.0.0.1.nip.io:${port}`,
      `localhost.:${port}`,
      `127.0.0.1:${port + 1 === 65_536 ? 1 : port + 1}`,
      'localhost',
      `[::1]x:${port}`,
    ]) {
      for (const path of GETS) {
        const r = await call(port, path, host);
        expect(r.status, `${host} ${path}`).toBe(421);
        expect(JSON.parse(r.body)).toMatchObject({ ok: false, code: 'ERR_API_HOST' });
      }
      const post = await call(port, '/v1/peers/b.test/reset-sequence', host, 'POST', bearer);
      expect(post.status, host).toBe(421);
    }
    expect(await noHost(port, '/v1/status')).toMatch(/^HTTP\/1\.1 421 /);
    expect(calls).toEqual({ resets: [], reconciles: 0 });
  });

  it('serves the loopback names with the bound port', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
      for (const path of GETS) expect((await call(port, path, host)).status, `${host} ${path}`).toBe(200);
    }
    const post = await call(port, '/v1/reconcile', `localhost:${port}`, 'POST', bearer);
    expect(post.status).toBe(200);
    expect(calls.reconciles).toBe(1);
  });
});

describe('the same Host rule on the health listener and the verify API', () => {
  it('refuses a foreign Host on a loopback health listener and verify API, serves their own', async () => {
    const stop = new AbortController();
    const health = buildHealthApp({
      ready: () => ({ ready: true, reasons: [] }),
      metrics: { expose: async () => ({ contentType: 'text/plain', body: 'x 1\n' }) },
    });
    const store = new FederatedBundleStore();
    store.set(local.bundle);
    const verify = buildVerifyApiApp({ source: store, now: () => T0 });
    const h = await listenOn(health, stop);
    const v = await listenOn(verify, stop);
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      expect((await call(h.port, path, `evil.example:${h.port}`)).status, path).toBe(421);
      expect((await call(h.port, path, `127.0.0.1:${h.port}`)).status, path).toBe(200);
    }
    const jwt = { 'content-type': 'application/json' };
    const evil = await call(v.port, '/v1/verify/jwt', `evil.example:${v.port}`, 'POST', jwt);
    expect(evil.status).toBe(421);
    expect(JSON.parse(evil.body)).toMatchObject({ code: 'ERR_API_HOST' });
    // Its own name reaches the route (400: no body was sent).
    expect((await call(v.port, '/v1/verify/jwt', `localhost:${v.port}`, 'POST', jwt)).status).toBe(400);
    stop.abort();
    await Promise.all([h.done, v.done]);
  });

  it('derives no check for Unix sockets and non-loopback binds, loopback names otherwise', () => {
    expect(defaultAllowedHosts('/run/admin.sock')).toBe('any');
    expect(defaultAllowedHosts({ address: '0.0.0.0', family: 'IPv4', port: 8088 })).toBe('any');
    expect(defaultAllowedHosts({ address: '10.1.2.3', family: 'IPv4', port: 8089 })).toBe('any');
    expect(defaultAllowedHosts({ address: '127.0.0.2', family: 'IPv4', port: 8089 })).toEqual([
      'localhost:8089',
      '127.0.0.1:8089',
      '[::1]:8089',
      '127.0.0.2:8089',
    ]);
    expect(defaultAllowedHosts({ address: '::1', family: 'IPv6', port: 9 })).toEqual([
      'localhost:9',
      '127.0.0.1:9',
      '[::1]:9',
    ]);
    expect(parseHostHeader('[::1]:80')).toEqual({ name: '[::1]', port: 80 });
    expect(parseHostHeader('Example.org')).toEqual({ name: 'example.org', port: undefined });
    for (const bad of ['', ':80', 'a:b', 'a:99999', '[::1', 'a:0'])
      expect(parseHostHeader(bad), bad).toBeUndefined();
  });
});

describe('spiffe-broker reset-sequence with the token file', () => {
  it('reads <stateDir>/admin.token (made by ensureAdminToken) and is refused without it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sb-token-'));
    const stateDir = join(dir, 'state');
    const { token } = await ensureAdminToken(stateDir);
    const calls: Calls = { resets: [], reconciles: 0 };
    const app = adminApp(calls, { adminToken: token });
    const stop = new AbortController();
    const { port, done } = await listenOn(app, stop);
    const out: string[] = [];
    const io = {
      stdout: (t: string) => out.push(t),
      stderr: (t: string) => out.push(t),
      readFile: async (p: string) => new Uint8Array(await (await import('node:fs/promises')).readFile(p)),
      now: () => T0,
      env: {},
      signal: stop.signal,
    };
    const admin = ['--admin', `http://127.0.0.1:${port}`, '--json'];
    expect(await resetSequenceCommand(['b.test', ...admin], io)).toBe(1);
    expect(out.join('')).toContain('ERR_API_UNAUTHORIZED');
    expect(calls.resets).toEqual([]);
    out.length = 0;
    expect(await resetSequenceCommand(['b.test', ...admin, '--state-dir', stateDir], io)).toBe(0);
    expect(JSON.parse(out.join(''))).toMatchObject({ ok: true, trustDomain: 'b.test' });
    expect(
      await resetSequenceCommand(['b.test', ...admin, '--token-file', join(stateDir, 'admin.token')], io),
    ).toBe(0);
    const config = join(dir, 'broker.yaml');
    await writeFile(
      config,
      `apiVersion: spiffe-broker.dev/v1\nkind: BrokerConfig\ntrustDomain: a.test\nstateDir: ${stateDir}\nspire:\n  servers:\n    - name: main\n      address: unix:///run/spire.sock\nallowlist:\n  file: /etc/allowlist.yaml\n`,
    );
    expect(await resetSequenceCommand(['b.test', ...admin, '--config', config], io)).toBe(0);
    expect(calls.resets).toEqual(['b.test', 'b.test', 'b.test']);
    out.length = 0;
    expect(
      await resetSequenceCommand(['b.test', ...admin], {
        ...io,
        env: { SPIFFE_BROKER_ADMIN_TOKEN_FILE: join(stateDir, 'admin.token') },
      }),
    ).toBe(0);
    expect(calls.resets).toHaveLength(4);
    out.length = 0;
    expect(await resetSequenceCommand(['b.test', ...admin, '--token-file', join(dir, 'missing')], io)).toBe(
      1,
    );
    expect(out.join('')).toContain('ERR_API_TOKEN');
    expect(
      await resetSequenceCommand(['b.test', ...admin, '--token-file', 'x', '--state-dir', 'y'], io),
    ).toBe(2);
    stop.abort();
    await done;
    await rm(dir, { recursive: true, force: true });
  });
});
