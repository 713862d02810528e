/**
 * fetchPeerBundle against a real go-spiffe v2 bundle endpoint (`federation.NewHandler` behind
 * go-spiffe's own TLS server config for https_spiffe, a plain certificate for https_web).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCert } from '../../../src/adapters/pki/index.js';
import { marshalBundle } from '../../../src/core/bundle/codec.js';
import { bundlesEqual } from '../../../src/core/bundle/diff.js';
import { BundleSet } from '../../../src/core/bundle/source.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { fetchPeerBundle } from '../../../src/engine/federation/fetch.js';
import { type GoServe, goServeOrSkip, startGoServe } from './go-serve.js';
import { id, makeBundle, makeCa, makeSvid, td } from './helpers.js';

const haveGo = goServeOrSkip('federation fetch vs go-spiffe federation.NewHandler');
const SERVER_ID = 'spiffe://go-peer.test/bundle-server';

describe.skipIf(!haveGo)('fetchPeerBundle against go-spiffe federation.NewHandler', () => {
  let dir: string;
  let ca: IssuedCert;
  let bundle: TrustBundle;
  let spiffe: GoServe;
  let web: GoServe;
  let webCa: IssuedCert;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'go-serve-'));
    ca = await makeCa('go-peer.test');
    bundle = await makeBundle('go-peer.test', { cas: [ca], jwt: 2, sequence: 42n, refreshHint: 90 });
    const svid = await makeSvid(ca, SERVER_ID);
    webCa = await makeCa('web-ca.test');
    const webCert = await makeSvid(webCa, 'spiffe://web-ca.test/x', { dnsNames: ['localhost'] });
    await Promise.all([
      writeFile(join(dir, 'bundle.json'), marshalBundle(bundle)),
      writeFile(join(dir, 'svid.pem'), svid.pem),
      writeFile(join(dir, 'svid-key.pem'), svid.privateKeyPem!),
      writeFile(join(dir, 'web.pem'), webCert.pem),
      writeFile(join(dir, 'web-key.pem'), webCert.privateKeyPem!),
    ]);
    [spiffe, web] = await Promise.all([
      startGoServe('go-peer.test', join(dir, 'bundle.json'), {
        profile: 'https_spiffe',
        svidFile: join(dir, 'svid.pem'),
        keyFile: join(dir, 'svid-key.pem'),
      }),
      startGoServe('go-peer.test', join(dir, 'bundle.json'), {
        profile: 'https_web',
        certFile: join(dir, 'web.pem'),
        keyFile: join(dir, 'web-key.pem'),
      }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([spiffe?.stop(), web?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  const spiffeProfile = (bundles: TrustBundle | BundleSet) =>
    ({ kind: 'https_spiffe', endpointSpiffeId: id(SERVER_ID), bundles }) as const;

  it('https_spiffe: authenticates go-spiffe’s server SVID and reads the same bundle', async () => {
    const r = await fetchPeerBundle({
      trustDomain: td('go-peer.test'),
      urls: [spiffe.url],
      profile: spiffeProfile(bundle),
    });
    expect(r.kind).toBe('bundle');
    if (r.kind !== 'bundle') return;
    expect(bundlesEqual(r.bundle, bundle)).toBe(true);
    expect(r.bundle.sequence).toBe(42n);
    expect(r.bundle.refreshHint).toBe(90);
    expect(r.ignored).toEqual([]);
  });

  it('https_spiffe: refuses go-spiffe’s server when configured for another endpoint ID', async () => {
    const err = await fetchPeerBundle({
      trustDomain: td('go-peer.test'),
      urls: [spiffe.url],
      profile: { kind: 'https_spiffe', endpointSpiffeId: id('spiffe://go-peer.test/other'), bundles: bundle },
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_FETCH_ENDPOINT_ID' });
  });

  it('https_spiffe: refuses it with a bootstrap bundle that does not hold its CA', async () => {
    const stranger = await makeBundle('go-peer.test');
    const err = await fetchPeerBundle({
      trustDomain: td('go-peer.test'),
      urls: [spiffe.url],
      profile: spiffeProfile(stranger),
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_FETCH_TLS' });
  });

  it('https_web: a normal CA-verified fetch with the host name checked', async () => {
    const connect = (o: tls.ConnectionOptions) => tls.connect({ ...o, host: '127.0.0.1' });
    const r = await fetchPeerBundle(
      {
        trustDomain: td('go-peer.test'),
        urls: [`https://localhost:${web.port}/`],
        profile: { kind: 'https_web', caPem: webCa.pem },
      },
      { connect },
    );
    expect(r.kind === 'bundle' && bundlesEqual(r.bundle, bundle)).toBe(true);
  });

  it('conditional GET and Prefer: wait are invisible to a plain server (200 at once, no long-poll)', async () => {
    const r = await fetchPeerBundle({
      trustDomain: td('go-peer.test'),
      urls: [spiffe.url],
      profile: spiffeProfile(bundle),
      etag: '"whatever"',
      waitSeconds: 55,
      limits: { timeoutMs: 5_000 },
    });
    expect(r.kind).toBe('bundle');
    expect(r.kind === 'bundle' && r.supportsLongPoll).toBe(false);
  });

  it('sees a rotation: the next fetch returns the new bundle, authenticated with the latest one', async () => {
    const next = await makeBundle('go-peer.test', { cas: [ca, await makeCa('go-peer.test')], sequence: 43n });
    await writeFile(join(dir, 'bundle.json'), marshalBundle(next));
    const live = new BundleSet([bundle]);
    const r = await fetchPeerBundle({
      trustDomain: td('go-peer.test'),
      urls: [spiffe.url],
      profile: spiffeProfile(live),
    });
    expect(r.kind === 'bundle' && bundlesEqual(r.bundle, next)).toBe(true);
    expect(r.kind === 'bundle' && r.bundle.sequence).toBe(43n);
  });
});
