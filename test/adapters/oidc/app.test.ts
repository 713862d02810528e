import { describe, expect, it } from 'vitest';
import { LocalBundle } from '../../../src/adapters/endpoint/local-bundle.js';
import { buildOidcDiscoveryApp } from '../../../src/adapters/oidc/app.js';
import { OidcDiscoveryServer } from '../../../src/adapters/oidc/server.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { FakeBundleGetter, LOCAL_TD, makeBundle } from '../endpoint/fixtures.js';

const ISSUER = 'https://oidc.local.test';

async function setup(opts: { issuer?: string; jwksUri?: string } = {}) {
  const clock = new FakeClock();
  const source = new FakeBundleGetter(await makeBundle({ sequence: 1n, jwt: 2 }));
  const local = new LocalBundle({ source, trustDomain: LOCAL_TD, deps: { clock } });
  const app = await buildOidcDiscoveryApp({
    local,
    issuer: opts.issuer ?? ISSUER,
    ...(opts.jwksUri ? { jwksUri: opts.jwksUri } : {}),
  });
  return { clock, source, local, app };
}

describe('OIDC discovery app', () => {
  it('answers 503 with a coded error before the local bundle is read', async () => {
    const { app } = await setup();
    const res = await app.inject({ url: '/.well-known/openid-configuration' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json()).toMatchObject({ ok: false, code: 'ERR_ENDPOINT_OIDC_NOT_READY' });
  });

  it('serves the discovery document naming the issuer and jwks_uri', async () => {
    const { app, local } = await setup();
    await local.refresh();
    const res = await app.inject({ url: '/.well-known/openid-configuration' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    expect(res.headers['cache-control']).toBe('max-age=60');
    expect(res.json()).toEqual({
      issuer: ISSUER,
      jwks_uri: `${ISSUER}/keys`,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256'],
    });
  });

  it('serves the JWT authorities as sig keys, nothing SPIFFE-specific', async () => {
    const { app, local } = await setup();
    const doc = await local.refresh();
    const res = await app.inject({ url: '/keys' });
    expect(res.statusCode).toBe(200);
    const keys = (res.json() as { keys: Record<string, unknown>[] }).keys;
    expect(keys.map((k) => k.kid)).toEqual([...doc.bundle.jwtAuthorities.keys()]);
    for (const k of keys) {
      expect(k.use).toBe('sig');
      expect(Object.keys(k).some((m) => m.startsWith('spiffe_') || m === 'x5c')).toBe(false);
    }
    expect(res.body).not.toContain('spiffe_');
  });

  it('follows a rotation of the local bundle at the next poll, with a new ETag', async () => {
    const { app, local, source } = await setup();
    await local.refresh();
    const before = await app.inject({ url: '/keys' });
    const again = await app.inject({
      url: '/keys',
      headers: { 'if-none-match': before.headers.etag as string },
    });
    expect(again.statusCode).toBe(304);
    source.bundle = await makeBundle({ sequence: 2n, jwt: 3 });
    await local.refresh();
    const after = await app.inject({
      url: '/keys',
      headers: { 'if-none-match': before.headers.etag as string },
    });
    expect(after.statusCode).toBe(200);
    expect(after.headers.etag).not.toBe(before.headers.etag);
    expect((after.json() as { keys: { kid: string }[] }).keys.map((k) => k.kid)).toEqual([
      ...source.bundle.jwtAuthorities.keys(),
    ]);
  });

  it('serves the documents under the issuer path and at a configured jwks_uri', async () => {
    const { app, local } = await setup({
      issuer: 'https://idp.test/tenants/local',
      jwksUri: 'https://idp.test/tenants/local/jwks.json',
    });
    await local.refresh();
    const a = await app.inject({ url: '/tenants/local/.well-known/openid-configuration' });
    expect(a.json()).toMatchObject({
      issuer: 'https://idp.test/tenants/local',
      jwks_uri: 'https://idp.test/tenants/local/jwks.json',
    });
    expect((await app.inject({ url: '/.well-known/openid-configuration' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/tenants/local/jwks.json' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/keys' })).statusCode).toBe(404);
  });

  it('answers other paths 404 and other methods 405, coded', async () => {
    const { app, local } = await setup();
    await local.refresh();
    const nf = await app.inject({ url: '/authorize' });
    expect(nf.statusCode).toBe(404);
    expect(nf.json()).toMatchObject({ code: 'ERR_ENDPOINT_OIDC_NOT_FOUND' });
    const m = await app.inject({ method: 'POST', url: '/keys', payload: 'x' });
    expect(m.statusCode).toBe(405);
    expect(m.headers.allow).toBe('GET, HEAD');
  });
});

describe('OidcDiscoveryServer', () => {
  it('refuses plain HTTP on a non-loopback address', () => {
    const local = { current: () => undefined, subscribe: () => () => undefined };
    expect(() => new OidcDiscoveryServer({ host: '0.0.0.0', port: 0, issuer: ISSUER, local })).toThrow(
      /only served on loopback/,
    );
  });

  it('serves plain HTTP on loopback until the signal aborts', async () => {
    const { local } = await setup();
    await local.refresh();
    const ac = new AbortController();
    let url: string | undefined;
    const server = new OidcDiscoveryServer({
      host: '127.0.0.1',
      port: 0,
      issuer: ISSUER,
      local,
      onListening: (u) => {
        url = u;
      },
    });
    const running = server.run(ac.signal);
    for (let i = 0; i < 200 && !url; i++) await new Promise((r) => setTimeout(r, 5));
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${url}/.well-known/openid-configuration`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { issuer: string }).issuer).toBe(ISSUER);
    ac.abort();
    await running;
    await expect(fetch(`${url}/keys`)).rejects.toThrow();
  });
});

describe('OIDC discovery app: per-peer documents', () => {
  async function peerSetup() {
    const { local } = await setup({ issuer: 'https://oidc.local.test/tenant' });
    await local.refresh();
    const partner = await makeBundle({ td: TrustDomain.parse('partner.test'), jwt: 2 });
    const published = new Map([['partner.test', { issuer: 'https://oidc.partner.test', bundle: partner }]]);
    const app = await buildOidcDiscoveryApp({
      local,
      issuer: 'https://oidc.local.test/tenant',
      peers: (td) => published.get(td),
    });
    return { app, partner, published };
  }

  it("publishes a peer's JWT authorities under /peers/<td>/ with the peer's issuer", async () => {
    const { app, partner } = await peerSetup();
    for (const prefix of ['', '/tenant']) {
      const doc = await app.inject({ url: `${prefix}/peers/partner.test/.well-known/openid-configuration` });
      expect(doc.statusCode).toBe(200);
      expect(doc.json()).toMatchObject({
        issuer: 'https://oidc.partner.test',
        jwks_uri: 'https://oidc.local.test/tenant/peers/partner.test/keys',
      });
      const keys = await app.inject({ url: `${prefix}/peers/partner.test/keys` });
      expect(
        (keys.json() as { keys: { kid: string; use: string }[] }).keys.map((k) => [k.kid, k.use]),
      ).toEqual([...partner.jwtAuthorities.keys()].map((kid) => [kid, 'sig']));
    }
    // The local documents are unchanged.
    const own = await app.inject({ url: '/tenant/.well-known/openid-configuration' });
    expect(own.json()).toMatchObject({ issuer: 'https://oidc.local.test/tenant' });
  });

  it('answers 404 for a peer that is not published, and follows a peer rotation', async () => {
    const { app, published } = await peerSetup();
    const nf = await app.inject({ url: '/peers/quiet.test/keys' });
    expect(nf.statusCode).toBe(404);
    expect(nf.json()).toMatchObject({ code: 'ERR_ENDPOINT_OIDC_NOT_FOUND' });
    expect((await app.inject({ url: '/peers/partner.test/other' })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: '/peers/partner.test/keys' })).statusCode).toBe(405);
    const before = await app.inject({ url: '/peers/partner.test/keys' });
    const rotated = await makeBundle({ td: TrustDomain.parse('partner.test'), jwt: 1 });
    published.set('partner.test', { issuer: 'https://oidc.partner.test', bundle: rotated });
    const after = await app.inject({
      url: '/peers/partner.test/keys',
      headers: { 'if-none-match': before.headers.etag as string },
    });
    expect(after.statusCode).toBe(200);
    expect((after.json() as { keys: { kid: string }[] }).keys.map((k) => k.kid)).toEqual([
      ...rotated.jwtAuthorities.keys(),
    ]);
    published.delete('partner.test');
    expect((await app.inject({ url: '/peers/partner.test/keys' })).statusCode).toBe(404);
  });

  it('refuses a provider answer for another trust domain', async () => {
    const { local } = await setup();
    await local.refresh();
    const other = await makeBundle({ td: TrustDomain.parse('other.test') });
    const app = await buildOidcDiscoveryApp({
      local,
      issuer: ISSUER,
      peers: () => ({ issuer: 'https://x.test', bundle: other }),
    });
    expect((await app.inject({ url: '/peers/partner.test/keys' })).statusCode).toBe(404);
  });
});
