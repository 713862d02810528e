import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BrokerMetrics, createMetricsRegistry, type Registry } from '../../../src/adapters/metrics/index.js';
import { buildVerifyApiApp, DEFAULT_VERIFY_BODY_LIMIT } from '../../../src/adapters/verify-api/index.js';
import { X509VerifyCache } from '../../../src/core/verify/index.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { HOUR, makePki, signJws, svidClaims, T0, type TestPki } from '../../support/fixtures.js';

let a: TestPki;
let other: TestPki;
let chainPem: string;

beforeAll(async () => {
  [a, other] = await Promise.all([makePki('a.test'), makePki('other.test')]);
  const leaf = await a.svid('/web');
  chainPem = leaf.pem + a.intermediate.pem;
});

function jwt(pki: TestPki, aud: string | string[] = 'spiffe://b.test/api'): string {
  const key = pki.jwtKeys['ec-p256'];
  return signJws({ alg: 'ES256', kid: key.kid, typ: 'JWT' }, svidClaims(pki.id('/web').toString(), aud), {
    alg: 'ES256',
    key: key.privateKey,
  });
}

async function counter(registry: Registry, labels: Record<string, string>): Promise<number | undefined> {
  const m = await registry.getSingleMetric('spiffe_broker_verify_total')?.get();
  return m?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

describe('verify API', () => {
  let store: FederatedBundleStore;
  let registry: Registry;
  let cache: X509VerifyCache;
  let app: ReturnType<typeof buildVerifyApiApp>;

  beforeEach(() => {
    store = new FederatedBundleStore();
    store.set(a.bundle);
    registry = createMetricsRegistry();
    cache = new X509VerifyCache();
    const metrics = new BrokerMetrics({ registry, clock: { now: () => T0 } });
    app = buildVerifyApiApp({ source: store, now: () => T0, metrics, cache, bodyLimit: 8192 });
  });

  it('verifies an X509-SVID chain sent as JSON, and reuses the cache', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await app.inject({ method: 'POST', url: '/v1/verify/x509', payload: { chain: chainPem } });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({
        ok: true,
        id: 'spiffe://a.test/web',
        trustDomain: 'a.test',
        expiresAt: new Date(T0 + HOUR).toISOString(),
      });
    }
    expect(cache.stats().hits).toBe(1);
    expect(
      await counter(registry, { trust_domain: 'a.test', kind: 'x509', result: 'ok', reason: 'none' }),
    ).toBe(2);
  });

  it('verifies a raw application/x-pem-file body', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/verify/x509',
      headers: { 'content-type': 'application/x-pem-file' },
      payload: chainPem,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().id).toBe('spiffe://a.test/web');
  });

  it('answers a refusal with 403 and the core’s code, counted under a bounded trust domain label', async () => {
    const foreign = await other.svid('/x');
    const res = await app.inject({ method: 'POST', url: '/v1/verify/x509', payload: { chain: foreign.pem } });
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ ok: false, code: 'ERR_VERIFY_NO_BUNDLE' });
    expect(Object.keys(res.json()).sort()).toEqual(['code', 'message', 'ok']);
    const expired = await a.svid('/old', {
      notBefore: new Date(T0 - 3 * HOUR),
      notAfter: new Date(T0 - HOUR),
    });
    const res2 = await app.inject({
      method: 'POST',
      url: '/v1/verify/x509',
      payload: { chain: expired.pem + a.intermediate.pem },
    });
    expect(res2.json().code).toBe('ERR_VERIFY_X509_EXPIRED');
    const refused = { kind: 'x509', result: 'refused' };
    expect(
      await counter(registry, { ...refused, trust_domain: 'unknown', reason: 'ERR_VERIFY_NO_BUNDLE' }),
    ).toBe(1);
    expect(
      await counter(registry, { ...refused, trust_domain: 'a.test', reason: 'ERR_VERIFY_X509_EXPIRED' }),
    ).toBe(1);
  });

  it('verifies JWT-SVIDs with one or several audiences', async () => {
    const ok = await app.inject({
      method: 'POST',
      url: '/v1/verify/jwt',
      payload: { token: jwt(a), audience: 'spiffe://b.test/api' },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ ok: true, id: 'spiffe://a.test/web', trustDomain: 'a.test' });
    const many = await app.inject({
      method: 'POST',
      url: '/v1/verify/jwt',
      payload: { token: jwt(a), audience: ['spiffe://c.test/x', 'spiffe://b.test/api'] },
    });
    expect(many.statusCode).toBe(200);
    const wrongAud = await app.inject({
      method: 'POST',
      url: '/v1/verify/jwt',
      payload: { token: jwt(a), audience: 'spiffe://c.test/x' },
    });
    expect(wrongAud.statusCode).toBe(403);
    expect(wrongAud.json().code).toBe('ERR_VERIFY_JWT_AUDIENCE');
    const garbage = await app.inject({
      method: 'POST',
      url: '/v1/verify/jwt',
      payload: { token: 'a.b', audience: 'x' },
    });
    expect(garbage.json().code).toBe('ERR_VERIFY_JWT_MALFORMED');
    expect(
      await counter(registry, {
        trust_domain: 'a.test',
        kind: 'jwt',
        result: 'refused',
        reason: 'ERR_VERIFY_JWT_AUDIENCE',
      }),
    ).toBe(1);
    expect(
      await counter(registry, {
        trust_domain: 'unknown',
        kind: 'jwt',
        result: 'refused',
        reason: 'ERR_VERIFY_JWT_MALFORMED',
      }),
    ).toBe(1);
  });

  it('follows the live bundle source: a removed bundle refuses at once', async () => {
    const token = jwt(a);
    const payload = { token, audience: 'spiffe://b.test/api' };
    expect((await app.inject({ method: 'POST', url: '/v1/verify/jwt', payload })).statusCode).toBe(200);
    store.delete('a.test');
    const res = await app.inject({ method: 'POST', url: '/v1/verify/jwt', payload });
    expect(res.json().code).toBe('ERR_VERIFY_NO_BUNDLE');
    const x = await app.inject({ method: 'POST', url: '/v1/verify/x509', payload: { chain: chainPem } });
    expect(x.json().code).toBe('ERR_VERIFY_NO_BUNDLE');
  });

  it.each([
    ['invalid JSON', { 'content-type': 'application/json' }, '{"chain":', 'x509'],
    [
      'a JSON string',
      { 'content-type': 'application/json' },
      JSON.stringify('-----BEGIN CERTIFICATE-----'),
      'x509',
    ],
    ['no chain member', { 'content-type': 'application/json' }, '{"pem":"x"}', 'x509'],
    ['chain not a string', { 'content-type': 'application/json' }, '{"chain":[1]}', 'x509'],
    ['no PEM blocks', { 'content-type': 'application/json' }, '{"chain":"hello"}', 'x509'],
    [
      'a PEM key instead of certificates',
      { 'content-type': 'application/x-pem-file' },
      '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
      'x509',
    ],
    ['no token', { 'content-type': 'application/json' }, '{"audience":"x"}', 'jwt'],
    ['no audience', { 'content-type': 'application/json' }, '{"token":"a.b.c"}', 'jwt'],
    [
      'an empty audience list',
      { 'content-type': 'application/json' },
      '{"token":"a.b.c","audience":[]}',
      'jwt',
    ],
    [
      'a non-string audience',
      { 'content-type': 'application/json' },
      '{"token":"a.b.c","audience":[7]}',
      'jwt',
    ],
    ['a JSON array', { 'content-type': 'application/json' }, '[]', 'jwt'],
  ])('refuses %s with 400 ERR_API_BAD_REQUEST', async (_name, headers, payload, kind) => {
    const res = await app.inject({ method: 'POST', url: `/v1/verify/${kind}`, headers, payload });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ ok: false, code: 'ERR_API_BAD_REQUEST' });
    expect(await registry.getSingleMetric('spiffe_broker_verify_total')?.get()).toMatchObject({ values: [] });
  });

  it('caps the request size with 413 ERR_API_BODY_TOO_LARGE', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/verify/x509',
      payload: { chain: 'x'.repeat(9000) },
    });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ ok: false, code: 'ERR_API_BODY_TOO_LARGE' });
  });

  it('by default takes a chain of 8 certificates and refuses 512 KiB with 413 (issue 16 item 7)', async () => {
    const defaults = buildVerifyApiApp({ source: store, now: () => T0 });
    // Eight certificates of this chain's size fit the default limit (64 KiB) with room to spare.
    const eight = chainPem.repeat(4);
    expect(Buffer.byteLength(JSON.stringify({ chain: eight }))).toBeLessThan(DEFAULT_VERIFY_BODY_LIMIT / 2);
    const ok = await defaults.inject({ method: 'POST', url: '/v1/verify/x509', payload: { chain: eight } });
    expect(ok.statusCode).toBe(200); // parsed and verified (repeated certificates are extra intermediates)
    const garbage = '-----BEGIN CERTIFICATE-----\n'.repeat(Math.ceil((512 * 1024) / 28));
    const big = await defaults.inject({
      method: 'POST',
      url: '/v1/verify/x509',
      headers: { 'content-type': 'application/x-pem-file' },
      payload: garbage,
    });
    expect(big.statusCode).toBe(413);
    expect(big.json()).toMatchObject({ ok: false, code: 'ERR_API_BODY_TOO_LARGE' });
  });

  it('refuses 512 KiB of unterminated BEGIN lines with a coded 400 when the limit allows them', async () => {
    const roomy = buildVerifyApiApp({ source: store, now: () => T0, bodyLimit: 1024 * 1024 });
    const garbage = '-----BEGIN CERTIFICATE-----\n'.repeat(Math.ceil((512 * 1024) / 28));
    const res = await roomy.inject({
      method: 'POST',
      url: '/v1/verify/x509',
      headers: { 'content-type': 'application/x-pem-file' },
      payload: garbage,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ ok: false, code: 'ERR_API_BAD_REQUEST' });
    expect(res.json().message).toMatch(/BEGIN without a matching END/);
  });

  it('refuses other media types with 415 and unknown routes with 404', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/verify/x509',
      headers: { 'content-type': 'application/xml' },
      payload: '<x/>',
    });
    expect(res.statusCode).toBe(415);
    expect(res.json().code).toBe('ERR_API_MEDIA_TYPE');
    const nf = await app.inject({ method: 'GET', url: '/v1/verify/x509' });
    expect(nf.statusCode).toBe(404);
    expect(nf.json()).toMatchObject({ ok: false, code: 'ERR_API_NOT_FOUND' });
  });

  it('refuses API misuse with TypeError', () => {
    expect(() => buildVerifyApiApp({ source: {} as FederatedBundleStore })).toThrow(TypeError);
    expect(() => buildVerifyApiApp({ source: store, bodyLimit: 10 })).toThrow(TypeError);
  });
});
