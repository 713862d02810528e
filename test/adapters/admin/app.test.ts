import { mkdtemp, rm } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type AdminTarget,
  adminGetJson,
  type BrokerStatus,
  buildAdminApp,
  isLoopbackHost,
  nodeHttpGet,
  type PeerStatus,
  runAdmin,
} from '../../../src/adapters/admin/index.js';
import { BrokerMetrics, createMetricsRegistry } from '../../../src/adapters/metrics/index.js';
import { tlsOptions, type X509SvidMaterial } from '../../../src/adapters/tls/index.js';
import { parseBundleMap } from '../../../src/core/bundle/bundle-map.js';
import { parseBundle } from '../../../src/core/bundle/codec.js';
import { BundleSet } from '../../../src/core/bundle/source.js';
import { matchAny } from '../../../src/core/spiffeid/index.js';
import { makePki, T0, type TestPki } from '../../support/fixtures.js';
import { DIFF, STATUS } from './fixtures.js';

let local: TestPki;
let peer: TestPki;
const TOKEN = 'admin-token-for-tests-0123456789abcdefghijkl';

beforeAll(async () => {
  [local, peer] = await Promise.all([makePki('a.test'), makePki('b.test', { sequence: 9n })]);
});

function options(
  over: Partial<Parameters<typeof buildAdminApp>[0]> = {},
): Parameters<typeof buildAdminApp>[0] {
  return {
    status: () => STATUS,
    ready: () => ({ ready: true, reasons: [] }),
    metrics: new BrokerMetrics({ registry: createMetricsRegistry(), clock: { now: () => T0 } }),
    bundles: () => [peer.bundle, local.bundle],
    adminToken: TOKEN,
    ...over,
  };
}

describe('admin API', () => {
  it('serves health, readiness and metrics', async () => {
    let ready = { ready: false, reasons: ['allowlist not loaded'] };
    const app = buildAdminApp(options({ ready: () => ready }));
    expect((await app.inject('/healthz')).json()).toEqual({ status: 'ok' });
    const notReady = await app.inject('/readyz');
    expect(notReady.statusCode).toBe(503);
    expect(notReady.json()).toEqual({ ready: false, reasons: ['allowlist not loaded'] });
    ready = { ready: true, reasons: [] };
    expect((await app.inject('/readyz')).statusCode).toBe(200);
    const metrics = await app.inject('/metrics');
    expect(metrics.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(metrics.body).toContain('spiffe_broker_build_info');
  });

  it('serves the status document exactly, dropping anything else', async () => {
    const extra = {
      ...STATUS,
      secret: 'x',
      peers: [{ ...STATUS.peers[0]!, token: 'y' } as PeerStatus],
    } as BrokerStatus;
    const app = buildAdminApp(options({ status: async () => extra }));
    const res = await app.inject('/v1/status');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(STATUS);
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('serves every held bundle as a Bundle Map, and one bundle by trust domain', async () => {
    const app = buildAdminApp(options());
    const map = parseBundleMap((await app.inject('/v1/bundles')).body);
    expect([...map.bundles.keys()]).toEqual(['a.test', 'b.test']);
    expect(map.bundles.get('b.test')?.sequence).toBe(9n);
    const one = await app.inject('/v1/bundles/b.test');
    expect(one.statusCode).toBe(200);
    expect(parseBundle(peer.td, one.body).bundle.sequence).toBe(9n);
    const byId = await app.inject(`/v1/bundles/${encodeURIComponent('spiffe://b.test')}`);
    expect(byId.statusCode).toBe(200);
    const missing = await app.inject('/v1/bundles/c.test');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toEqual({
      ok: false,
      code: 'ERR_API_NOT_FOUND',
      message: 'the broker holds no bundle for trust domain "c.test"',
    });
    const invalid = await app.inject('/v1/bundles/Not_A_Domain!');
    expect(invalid.statusCode).toBe(400);
    expect(invalid.json().code).toBe('ERR_API_BAD_REQUEST');
  });

  it('answers diff and reconcile with 501 when the broker has no provider, and runs them when it has', async () => {
    const bare = buildAdminApp(options());
    expect((await bare.inject('/v1/diff')).json()).toMatchObject({ code: 'ERR_API_NOT_IMPLEMENTED' });
    expect((await bare.inject('/v1/diff')).statusCode).toBe(501);
    expect(
      (
        await bare.inject({
          method: 'POST',
          url: '/v1/reconcile',
          headers: { authorization: `Bearer ${TOKEN}` },
        })
      ).statusCode,
    ).toBe(501);
    const diff = DIFF;
    let reconciled = 0;
    const app = buildAdminApp(
      options({
        diff: async () => diff,
        reconcile: async () => {
          reconciled++;
        },
      }),
    );
    expect((await app.inject('/v1/diff')).json()).toEqual(diff);
    const r = await app.inject({
      method: 'POST',
      url: '/v1/reconcile',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(r.json()).toEqual({ ok: true });
    expect(reconciled).toBe(1);
  });

  it('answers a failing provider with 500 ERR_API_INTERNAL and unknown routes with 404', async () => {
    const app = buildAdminApp(
      options({
        status: () => {
          throw new Error('manager not started');
        },
        ready: async () => {
          throw new Error('boom');
        },
      }),
    );
    const res = await app.inject('/v1/status');
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ ok: false, code: 'ERR_API_INTERNAL', message: 'manager not started' });
    expect((await app.inject('/readyz')).json()).toMatchObject({ code: 'ERR_API_INTERNAL' });
    expect((await app.inject('/v2/nothing')).json()).toMatchObject({ code: 'ERR_API_NOT_FOUND' });
  });

  it('refuses API misuse with TypeError', () => {
    expect(() => buildAdminApp({ ...options(), status: undefined as never })).toThrow(TypeError);
    expect(() => buildAdminApp({ ...options(), metrics: {} as never })).toThrow(TypeError);
  });
});

describe('admin listener', () => {
  it('serves on a Unix socket, read with the CLI client', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sb-admin-'));
    const path = join(dir, 'admin.sock');
    const stop = new AbortController();
    const app = buildAdminApp(options());
    let listening!: () => void;
    const up = new Promise<void>((r) => {
      listening = r;
    });
    const running = runAdmin(app, { listen: { path }, signal: stop.signal, onListening: () => listening() });
    await up;
    const target: AdminTarget = { socketPath: path };
    expect(await adminGetJson(nodeHttpGet, target, '/v1/status')).toEqual(STATUS);
    await expect(adminGetJson(nodeHttpGet, target, '/v1/bundles/zz.test')).rejects.toMatchObject({
      code: 'ERR_API_RESPONSE',
      message: expect.stringContaining('(ERR_API_NOT_FOUND)'),
    });
    stop.abort();
    await running;
    await expect(adminGetJson(nodeHttpGet, target, '/healthz')).rejects.toMatchObject({
      code: 'ERR_API_CONNECT',
    });
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses to listen beyond loopback without mTLS', async () => {
    const app = buildAdminApp(options());
    await expect(
      runAdmin(app, { listen: { host: '0.0.0.0', port: 0 }, signal: new AbortController().signal }),
    ).rejects.toThrow(TypeError);
    expect(isLoopbackHost('127.0.0.1')).toBe(true);
    expect(isLoopbackHost('[::1]')).toBe(true);
    expect(isLoopbackHost('localhost')).toBe(true);
    expect(isLoopbackHost('10.0.0.1')).toBe(false);
    expect(isLoopbackHost('::')).toBe(false);
  });

  it('with mTLS, admits only admin SPIFFE IDs verified against the local trust domain bundle', async () => {
    const material = async (pki: TestPki, path: string): Promise<X509SvidMaterial> => {
      const leaf = await pki.svid(path);
      return { certChainPem: leaf.pem + pki.intermediate.pem, privateKeyPem: leaf.privateKeyPem! };
    };
    const refused: Error[] = [];
    const app = buildAdminApp(
      options({
        mtls: {
          trustDomain: local.td,
          localBundle: () => local.bundle,
          adminIds: [local.id('/ops')],
          svid: await material(local, '/spiffe-broker'),
          now: () => T0,
        },
        onRefused: (e) => refused.push(e),
      }),
    );
    // inject() has no verified TLS peer: refused.
    const injected = await app.inject('/v1/status');
    expect(injected.statusCode).toBe(403);
    expect(injected.json().code).toBe('ERR_VERIFY_ID_NOT_AUTHORIZED');

    const stop = new AbortController();
    let port = 0;
    let listening!: () => void;
    const up = new Promise<void>((r) => {
      listening = r;
    });
    const running = runAdmin(app, {
      listen: { host: '127.0.0.1', port: 0 },
      signal: stop.signal,
      onListening: (addr) => {
        port = Number(new URL(addr).port);
        listening();
      },
    });
    await up;

    const call = async (svid: X509SvidMaterial): Promise<{ status: number; body: string } | Error> => {
      // The client trusts the broker's trust domain bundle for the server side.
      const client = tlsOptions({
        source: new BundleSet([local.bundle]),
        authorize: matchAny(),
        svid,
        now: () => T0,
      });
      const agent = client.agent();
      try {
        return await new Promise((resolve, reject) => {
          httpsGet({ host: '127.0.0.1', port, path: '/v1/status', agent }, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => {
              body += d.toString();
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          }).on('error', reject);
        });
      } catch (err) {
        return err as Error;
      } finally {
        agent.destroy();
      }
    };
    const admin = await call(await material(local, '/ops'));
    expect(admin).toMatchObject({ status: 200 });
    expect(JSON.parse((admin as { body: string }).body)).toEqual(STATUS);
    expect(await call(await material(local, '/not-ops'))).toBeInstanceOf(Error);
    // An SVID of another trust domain never verifies against the local bundle.
    expect(await call(await material(peer, '/ops'))).toBeInstanceOf(Error);
    expect(refused.map((e) => (e as { code?: string }).code)).toEqual([
      'ERR_VERIFY_ID_NOT_AUTHORIZED',
      'ERR_VERIFY_NO_BUNDLE',
    ]);
    stop.abort();
    await running;
  });
});

describe('buildHealthApp', () => {
  it('serves only /healthz, /readyz and /metrics', async () => {
    const { buildHealthApp } = await import('../../../src/adapters/admin/app.js');
    let ready = false;
    const app = buildHealthApp({
      ready: () => ({ ready, reasons: ready ? [] : ['allowlist not loaded yet'] }),
      metrics: {
        expose: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'spiffe_broker_x 1\n' }),
      },
    });
    expect((await app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const notReady = await app.inject({ url: '/readyz' });
    expect(notReady.statusCode).toBe(503);
    expect(notReady.json()).toEqual({ ready: false, reasons: ['allowlist not loaded yet'] });
    ready = true;
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/metrics' })).body).toBe('spiffe_broker_x 1\n');
    for (const url of ['/v1/status', '/v1/bundles', '/v1/diff'])
      expect((await app.inject({ url })).statusCode).toBe(404);
    await app.close();
  });
});
