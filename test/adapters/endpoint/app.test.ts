import { Agent, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type BundleEndpointApp, buildBundleEndpointApp } from '../../../src/adapters/endpoint/app.js';
import { LocalBundle } from '../../../src/adapters/endpoint/local-bundle.js';
import { parseBundleMap } from '../../../src/core/bundle/bundle-map.js';
import { parseBundle } from '../../../src/core/bundle/codec.js';
import { bundlesEqual } from '../../../src/core/bundle/diff.js';
import { BundleSet } from '../../../src/core/bundle/source.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { FakeBundleGetter, LOCAL_TD, makeBundle } from './fixtures.js';

let apps: BundleEndpointApp[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
});

async function setup(
  opts: {
    maxHeldRequests?: number;
    bundleMap?: { path: string; federated?: BundleSet };
    ready?: boolean;
  } = {},
) {
  const clock = new FakeClock();
  const source = new FakeBundleGetter(await makeBundle({ sequence: 1n }));
  const local = new LocalBundle({ source, trustDomain: LOCAL_TD, deps: { clock } });
  if (opts.ready !== false) await local.refresh();
  const app = await buildBundleEndpointApp({
    local,
    deps: { clock },
    ...(opts.maxHeldRequests !== undefined ? { maxHeldRequests: opts.maxHeldRequests } : {}),
    ...(opts.bundleMap ? { bundleMap: opts.bundleMap } : {}),
  });
  apps.push(app);
  return { clock, source, local, app };
}

describe('bundle endpoint: plain SPIFFE clients', () => {
  it('GET / serves the local bundle as application/json with ETag and Cache-Control', async () => {
    const { app, local, source } = await setup();
    const res = await app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers.etag).toBe(local.current()?.etag);
    expect(res.headers['cache-control']).toBe('max-age=300');
    expect(res.rawPayload.equals(local.current()!.body)).toBe(true);
    const served = parseBundle(LOCAL_TD, res.rawPayload).bundle;
    expect(bundlesEqual(served, source.bundle!, { refreshHint: false })).toBe(true);
    expect(served.refreshHint).toBe(300);
    expect(served.sequence).toBe(1n);
  });

  it('ignores the query string like SPIRE does', async () => {
    const { app } = await setup();
    expect((await app.inject({ method: 'GET', url: '/?x=1' })).statusCode).toBe(200);
  });

  it('HEAD / answers the GET headers without a body', async () => {
    const { app, local } = await setup();
    const res = await app.inject({ method: 'HEAD', url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).toBe(local.current()?.etag);
    expect(res.headers['content-length']).toBe(String(local.current()!.body.length));
    expect(res.payload).toBe('');
  });

  it.each(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const)(
    '%s / → 405 with SPIRE’s body',
    async (method) => {
      const { app } = await setup();
      const res = await app.inject({
        method,
        url: '/',
        headers: { 'content-type': 'application/json' },
        payload: '{not json',
      });
      expect(res.statusCode).toBe(405);
      expect(res.payload).toBe('405 method not allowed\n');
      expect(res.headers.allow).toBe('GET, HEAD');
    },
  );

  it.each(['/bundle', '/.well-known/spiffe', '//', '/index.html'])(
    'GET %s → 404 with SPIRE’s body',
    async (url) => {
      const { app } = await setup();
      const res = await app.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(404);
      expect(res.payload).toBe('404 page not found\n');
    },
  );

  it('If-None-Match with the current ETag → 304 with ETag and Cache-Control; other tags → 200', async () => {
    const { app, local } = await setup();
    const etag = local.current()!.etag;
    const res = await app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': etag } });
    expect(res.statusCode).toBe(304);
    expect(res.payload).toBe('');
    expect(res.headers.etag).toBe(etag);
    expect(res.headers['cache-control']).toBe('max-age=300');
    expect(
      (await app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': `W/${etag}` } })).statusCode,
    ).toBe(304);
    expect(
      (await app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': '*' } })).statusCode,
    ).toBe(304);
    expect(
      (await app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': '"old"' } })).statusCode,
    ).toBe(200);
  });

  it('a new bundle gets a new ETag; the old one no longer matches', async () => {
    const { app, local, source } = await setup();
    const old = local.current()!.etag;
    source.bundle = source.bundle!.withSequence(2n);
    await local.refresh();
    const res = await app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': old } });
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).not.toBe(old);
    expect(parseBundle(LOCAL_TD, res.rawPayload).bundle.sequence).toBe(2n);
  });

  it('answers 503 with Retry-After until the first bundle is read', async () => {
    const { app, local } = await setup({ ready: false });
    const res = await app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    await local.refresh();
    expect((await app.inject({ method: 'GET', url: '/' })).statusCode).toBe(200);
  });

  it('Prefer: wait without a matching If-None-Match is answered at once (invisible to plain clients)', async () => {
    const { app } = await setup();
    const res = await app.inject({ method: 'GET', url: '/', headers: { prefer: 'wait=30' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['preference-applied']).toBeUndefined();
    const star = await app.inject({
      method: 'GET',
      url: '/',
      headers: { prefer: 'wait=30', 'if-none-match': '*' },
    });
    expect(star.statusCode).toBe(304);
    expect(app.bundleEndpoint.heldRequests()).toBe(0);
  });
});

describe('bundle endpoint: change notification (If-None-Match + Prefer: wait)', () => {
  it('holds the request until the bundle changes, then answers 200 with the new document', async () => {
    const { app, local, source, clock } = await setup();
    const etag = local.current()!.etag;
    const pending = app.inject({
      method: 'GET',
      url: '/',
      headers: { 'if-none-match': etag, prefer: 'wait=30' },
    });
    await clock.settle();
    expect(app.bundleEndpoint.heldRequests()).toBe(1);
    source.bundle = source.bundle!.withSequence(5n);
    await local.refresh();
    const res = await pending;
    expect(res.statusCode).toBe(200);
    expect(res.headers['preference-applied']).toBe('wait=30');
    expect(res.headers.etag).toBe(local.current()!.etag);
    expect(parseBundle(LOCAL_TD, res.rawPayload).bundle.sequence).toBe(5n);
    expect(app.bundleEndpoint.heldRequests()).toBe(0);
  });

  it('a held request makes the local bundle watched (fast polls) until it is answered or times out', async () => {
    const { app, local, source, clock } = await setup();
    const etag = local.current()!.etag;
    expect(local.watchers()).toBe(0);
    const changed = app.inject({
      method: 'GET',
      url: '/',
      headers: { 'if-none-match': etag, prefer: 'wait=30' },
    });
    const timedOut = app.inject({
      method: 'GET',
      url: '/',
      headers: { 'if-none-match': etag, prefer: 'wait=5' },
    });
    await clock.settle();
    // One watch for every held request, kept until the last is answered.
    expect(local.watchers()).toBe(1);
    await clock.advance(5_000);
    expect((await timedOut).statusCode).toBe(304);
    expect(local.watchers()).toBe(1);
    source.bundle = source.bundle!.withSequence(6n);
    await local.refresh();
    expect((await changed).statusCode).toBe(200);
    expect(local.watchers()).toBe(0);
  });

  it('answers 304 when the wait ends without a change; waits above 60 s are clamped', async () => {
    const { app, local, clock } = await setup();
    const etag = local.current()!.etag;
    const pending = app.inject({
      method: 'GET',
      url: '/',
      headers: { 'if-none-match': etag, prefer: 'wait=600' },
    });
    let done = false;
    void pending.then(() => {
      done = true;
    });
    await clock.advance(59_999);
    expect(done).toBe(false);
    await clock.advance(1);
    const res = await pending;
    expect(res.statusCode).toBe(304);
    expect(res.headers['preference-applied']).toBe('wait=60');
    expect(res.headers.etag).toBe(etag);
  });

  it('an unchanged poll does not wake held requests', async () => {
    const { app, local, clock } = await setup();
    const etag = local.current()!.etag;
    void app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': etag, prefer: 'wait=10' } });
    await clock.settle();
    await local.refresh();
    await clock.settle();
    expect(app.bundleEndpoint.heldRequests()).toBe(1);
  });

  it('answers 503 with Retry-After past maxHeldRequests', async () => {
    const { app, local, clock } = await setup({ maxHeldRequests: 2 });
    const headers = { 'if-none-match': local.current()!.etag, prefer: 'wait=10' };
    const held = [
      app.inject({ method: 'GET', url: '/', headers }),
      app.inject({ method: 'GET', url: '/', headers }),
    ];
    await clock.settle();
    const res = await app.inject({ method: 'GET', url: '/', headers });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    await clock.advance(10_000);
    expect((await Promise.all(held)).map((r) => r.statusCode)).toEqual([304, 304]);
  });

  it('wakes 10,000 held requests on one change', async () => {
    const { app, local, source, clock } = await setup();
    const headers = { 'if-none-match': local.current()!.etag, prefer: 'wait=60' };
    const pending = Array.from({ length: 10_000 }, () => app.inject({ method: 'GET', url: '/', headers }));
    await clock.settle();
    expect(app.bundleEndpoint.heldRequests()).toBe(10_000);
    source.bundle = source.bundle!.withSequence(9n);
    await local.refresh();
    const results = await Promise.all(pending);
    expect(new Set(results.map((r) => r.statusCode))).toEqual(new Set([200]));
    expect(new Set(results.map((r) => r.headers.etag))).toEqual(new Set([local.current()!.etag]));
  });

  it('closing the app answers held requests with 304', async () => {
    const { app, local, clock } = await setup();
    const pending = app.inject({
      method: 'GET',
      url: '/',
      headers: { 'if-none-match': local.current()!.etag, prefer: 'wait=60' },
    });
    await clock.settle();
    await app.close();
    expect((await pending).statusCode).toBe(304);
  });

  it('releases a held request whose client disconnects (real socket)', async () => {
    const { app, local } = await setup();
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path: '/',
      headers: { 'if-none-match': local.current()!.etag, prefer: 'wait=60' },
    });
    req.on('error', () => {});
    req.end();
    // Real socket I/O: poll in real time (bounded), not on the fake clock.
    const until = async (cond: () => boolean) => {
      for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
    };
    await until(() => app.bundleEndpoint.heldRequests() === 1);
    expect(app.bundleEndpoint.heldRequests()).toBe(1);
    req.destroy();
    await until(() => app.bundleEndpoint.heldRequests() === 0);
    expect(app.bundleEndpoint.heldRequests()).toBe(0);
    expect(local.watchers()).toBe(0); // the last held request gone: back to the idle cadence
    // The server still answers normally afterwards.
    expect((await app.inject({ method: 'GET', url: '/' })).statusCode).toBe(200);
  });
});

describe('bundle endpoint: held requests answered on the raw response', () => {
  it('each held request gets its own Preference-Applied, and the 304 carries ETag and Cache-Control', async () => {
    const { app, local, source, clock } = await setup();
    const etag = local.current()!.etag;
    const headers = (wait: number) => ({ 'if-none-match': etag, prefer: `wait=${wait}` });
    const changed = [10, 20, 10].map((w) => app.inject({ method: 'GET', url: '/', headers: headers(w) }));
    const timedOut = app.inject({ method: 'GET', url: '/', headers: headers(2) });
    await clock.settle();
    await clock.advance(2_000);
    const notModified = await timedOut;
    expect(notModified.statusCode).toBe(304);
    expect(notModified.headers).toMatchObject({
      etag,
      'cache-control': `max-age=${local.current()!.refreshHint}`,
      'preference-applied': 'wait=2',
    });
    expect(notModified.body).toBe('');
    source.bundle = source.bundle!.withSequence(7n);
    await local.refresh();
    const answers = await Promise.all(changed);
    expect(answers.map((r) => [r.statusCode, r.headers['preference-applied']])).toEqual([
      [200, 'wait=10'],
      [200, 'wait=20'],
      [200, 'wait=10'],
    ]);
    for (const r of answers) {
      expect(r.headers['content-length']).toBe(String(local.current()!.body.length));
      expect(parseBundle(LOCAL_TD, r.rawPayload).bundle.sequence).toBe(7n);
    }
  });

  it('a connection whose held request was answered serves the next request (keep-alive, real socket)', async () => {
    const { app, local, source } = await setup();
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = (headers: Record<string, string>) =>
      new Promise<{ status: number; body: Buffer; socket: unknown }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: '/', agent, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode!, body: Buffer.concat(chunks), socket: req.socket }),
          );
        });
        req.on('error', reject);
        req.end();
      });
    try {
      const held = get({ 'if-none-match': local.current()!.etag, prefer: 'wait=60' });
      for (let i = 0; i < 400 && app.bundleEndpoint.heldRequests() === 0; i++)
        await new Promise((r) => setTimeout(r, 5));
      source.bundle = source.bundle!.withSequence(8n);
      await local.refresh();
      const first = await held;
      expect(first.status).toBe(200);
      expect(parseBundle(LOCAL_TD, first.body).bundle.sequence).toBe(8n);
      const second = await get({});
      expect(second.status).toBe(200);
      expect(second.socket).toBe(first.socket);
    } finally {
      agent.destroy();
    }
  });
});

describe('bundle endpoint: Bundle Map route', () => {
  it('serves the local bundle and the federated ones, local winning over a same-named entry', async () => {
    const peer = await makeBundle({ td: TrustDomain.parse('peer.test'), sequence: 3n });
    const impostor = await makeBundle({ td: LOCAL_TD, sequence: 99n });
    const federated = new BundleSet([peer, impostor]);
    const { app, local } = await setup({ bundleMap: { path: '/bundles', federated } });
    const res = await app.inject({ method: 'GET', url: '/bundles' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    const map = parseBundleMap(res.rawPayload).bundles;
    expect([...map.keys()]).toEqual(['local.test', 'peer.test']);
    expect(bundlesEqual(map.get('local.test')!, local.current()!.bundle, { refreshHint: false })).toBe(true);
    expect(bundlesEqual(map.get('peer.test')!, peer, { refreshHint: false })).toBe(true);
    const again = await app.inject({
      method: 'GET',
      url: '/bundles',
      headers: { 'if-none-match': res.headers.etag! },
    });
    expect(again.statusCode).toBe(304);
    expect((await app.inject({ method: 'POST', url: '/bundles' })).statusCode).toBe(405);
  });

  it('is absent unless configured', async () => {
    const { app } = await setup();
    expect((await app.inject({ method: 'GET', url: '/bundles' })).statusCode).toBe(404);
  });
});
