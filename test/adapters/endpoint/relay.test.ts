import { afterEach, describe, expect, it } from 'vitest';
import { type BundleEndpointApp, buildBundleEndpointApp } from '../../../src/adapters/endpoint/app.js';
import { LocalBundle } from '../../../src/adapters/endpoint/local-bundle.js';
import { parseBundle } from '../../../src/core/bundle/codec.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { FakeBundleGetter, LOCAL_TD, makeBundle } from './fixtures.js';

const PEER = TrustDomain.parse('peer.test');
const HIDDEN = TrustDomain.parse('hidden.test');
const apps: BundleEndpointApp[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function setup(opts: { maxHeldRequests?: number } = {}) {
  const clock = new FakeClock();
  const local = new LocalBundle({
    source: new FakeBundleGetter(await makeBundle({ sequence: 1n })),
    trustDomain: LOCAL_TD,
    deps: { clock },
  });
  await local.refresh();
  const store = new FederatedBundleStore();
  store.set(await makeBundle({ td: PEER, sequence: 7n, refreshHint: 120 }));
  store.set(await makeBundle({ td: HIDDEN, sequence: 1n }));
  const relayed = new Set([PEER.name]);
  const app = await buildBundleEndpointApp({
    local,
    deps: { clock },
    ...(opts.maxHeldRequests !== undefined ? { maxHeldRequests: opts.maxHeldRequests } : {}),
    relay: {
      bundle: (td) => (relayed.has(td) ? store.get(td) : undefined),
      subscribe: (listener) => store.subscribe((c) => listener(c.trustDomain)),
    },
  });
  apps.push(app);
  return { clock, local, store, relayed, app };
}

describe('bundle endpoint: relay of accepted peer bundles (GET /bundles/<td>)', () => {
  it('serves a relayed peer bundle exactly as accepted, with ETag and its refresh hint', async () => {
    const { app, store } = await setup();
    const res = await app.inject({ url: '/bundles/peer.test' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('max-age=120');
    expect(res.headers.etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    const got = parseBundle(PEER, res.rawPayload).bundle;
    const want = store.get(PEER.name)!;
    expect(got.sequence).toBe(7n);
    expect(got.refreshHint).toBe(120);
    expect(got.x509Authorities.map((a) => a.sha256)).toEqual(want.x509Authorities.map((a) => a.sha256));
    expect([...got.jwtAuthorities.keys()]).toEqual([...want.jwtAuthorities.keys()]);
    // The local document is unaffected.
    expect((await app.inject({ url: '/' })).statusCode).toBe(200);
  });

  it.each([
    ['a peer without relay', '/bundles/hidden.test'],
    ['an unknown trust domain', '/bundles/nobody.test'],
    ['the local trust domain', `/bundles/${LOCAL_TD.name}`],
    ['an invalid name', '/bundles/Not..Valid'],
  ])('answers 404 with a coded error for %s', async (_what, url) => {
    const { app } = await setup();
    const res = await app.inject({ url });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ ok: false, code: 'ERR_ENDPOINT_RELAY_NOT_FOUND' });
  });

  it('answers 405 to other methods on a relay path, and 404 on /bundles/ itself', async () => {
    const { app } = await setup();
    const res = await app.inject({ method: 'POST', url: '/bundles/peer.test', payload: '{}' });
    expect(res.statusCode).toBe(405);
    expect((await app.inject({ url: '/bundles/a/b' })).statusCode).toBe(405);
  });

  it('answers 304 to If-None-Match with the current ETag', async () => {
    const { app } = await setup();
    const first = await app.inject({ url: '/bundles/peer.test' });
    const res = await app.inject({
      url: '/bundles/peer.test',
      headers: { 'if-none-match': first.headers.etag as string },
    });
    expect(res.statusCode).toBe(304);
    expect(res.headers.etag).toBe(first.headers.etag);
  });

  it('holds a long-poll until that peer changes, then answers 200 with the new bundle', async () => {
    const { app, store, clock } = await setup();
    const first = await app.inject({ url: '/bundles/peer.test' });
    const pending = app.inject({
      url: '/bundles/peer.test',
      headers: { 'if-none-match': first.headers.etag as string, prefer: 'wait=30' },
    });
    await clock.settle();
    expect(app.bundleEndpoint.heldRequests()).toBe(1);
    // Another peer's change does not wake it.
    store.set(store.get(HIDDEN.name)!.withSequence(2n));
    await clock.settle();
    expect(app.bundleEndpoint.heldRequests()).toBe(1);
    store.set(store.get(PEER.name)!.withSequence(8n));
    const res = await pending;
    expect(res.statusCode).toBe(200);
    expect(res.headers['preference-applied']).toBe('wait=30');
    expect(parseBundle(PEER, res.rawPayload).bundle.sequence).toBe(8n);
    expect(app.bundleEndpoint.heldRequests()).toBe(0);
  });

  it('answers a held long-poll 404 when the peer is removed', async () => {
    const { app, store, clock } = await setup();
    const first = await app.inject({ url: '/bundles/peer.test' });
    const pending = app.inject({
      url: '/bundles/peer.test',
      headers: { 'if-none-match': first.headers.etag as string, prefer: 'wait=30' },
    });
    await clock.settle();
    store.delete(PEER.name);
    const res = await pending;
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ code: 'ERR_ENDPOINT_RELAY_NOT_FOUND' });
  });

  it('answers 304 when the wait ends unchanged, and 503 past the held-request cap', async () => {
    const { app, clock } = await setup({ maxHeldRequests: 1 });
    const etag = (await app.inject({ url: '/bundles/peer.test' })).headers.etag as string;
    const held = app.inject({
      url: '/bundles/peer.test',
      headers: { 'if-none-match': etag, prefer: 'wait=5' },
    });
    await clock.settle();
    const refused = await app.inject({
      url: '/bundles/peer.test',
      headers: { 'if-none-match': etag, prefer: 'wait=5' },
    });
    expect(refused.statusCode).toBe(503);
    await clock.advance(5_000);
    const res = await held;
    expect(res.statusCode).toBe(304);
    expect(res.headers['preference-applied']).toBe('wait=5');
  });

  it('stops relaying a peer once it is no longer relay-enabled', async () => {
    const { app, relayed } = await setup();
    expect((await app.inject({ url: '/bundles/peer.test' })).statusCode).toBe(200);
    relayed.delete(PEER.name);
    expect((await app.inject({ url: '/bundles/peer.test' })).statusCode).toBe(404);
  });
});

describe('bundle endpoint without relay', () => {
  it('has no relay routes', async () => {
    const local = new LocalBundle({
      source: new FakeBundleGetter(await makeBundle()),
      trustDomain: LOCAL_TD,
      deps: { clock: new FakeClock() },
    });
    await local.refresh();
    const app = await buildBundleEndpointApp({ local });
    apps.push(app);
    const res = await app.inject({ url: '/bundles/peer.test' });
    expect(res.statusCode).toBe(404);
    expect(res.body).toBe('404 page not found\n');
  });
});
