/**
 * Interop with real peers:
 * - go-spiffe v2 `federation.FetchBundle` (both profiles) against our endpoint;
 * - real spire-server as the endpoint's source (GetBundle) and SVID issuer (MintX509SVID), and a
 *   second real spire-server federating with our endpoint (https_spiffe, and https_web with a test
 *   CA passed through SSL_CERT_FILE).
 * Missing binaries skip loudly, or fail with CI=true.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBundle } from '../../../src/adapters/endpoint/local-bundle.js';
import { type RunningBundleEndpoint, startBundleEndpoint } from '../../../src/adapters/endpoint/server.js';
import { MintedSvidCredentials } from '../../../src/adapters/endpoint/svid-credentials.js';
import { FileTlsCredentials } from '../../../src/adapters/endpoint/tls-credentials.js';
import { createX509Svid, type IssuedCert } from '../../../src/adapters/pki/index.js';
import { SpireServerClient } from '../../../src/adapters/spire/client.js';
import { marshalBundle, parseBundle } from '../../../src/core/bundle/codec.js';
import { bundlesEqual } from '../../../src/core/bundle/diff.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { realSpireOrSkip, type SpireServerInstance, startSpireServer } from '../../support/spire-harness.js';
import {
  CaMinter,
  FakeBundleGetter,
  LOCAL_TD,
  makeBundle,
  makeCa,
  NOT_AFTER,
  NOT_BEFORE,
} from './fixtures.js';
import { goFetch, goFetchOrSkip } from './go-fetch.js';

const haveGoFetch = goFetchOrSkip('endpoint interop (go-spiffe)');
const haveSpire = await realSpireOrSkip('endpoint interop (real spire-server)');

async function webCert(ca: IssuedCert): Promise<IssuedCert> {
  return createX509Svid({
    id: SpiffeId.parse(`spiffe://${LOCAL_TD.name}/web`),
    issuer: ca,
    notBefore: NOT_BEFORE,
    notAfter: NOT_AFTER,
    dnsNames: ['localhost'],
  });
}

/** Same authorities, and the sequence when asked. */
function expectSameBundle(got: TrustBundle, want: TrustBundle, sequence = true): void {
  expect(got.x509Authorities.map((a) => a.sha256).sort()).toEqual(
    want.x509Authorities.map((a) => a.sha256).sort(),
  );
  expect([...got.jwtAuthorities.keys()].sort()).toEqual([...want.jwtAuthorities.keys()].sort());
  expect(bundlesEqual(got, want, { refreshHint: false, sequence })).toBe(true);
}

describe.skipIf(!haveGoFetch)('go-spiffe federation.FetchBundle against our endpoint', () => {
  const stop = new AbortController();
  let dir: string;
  let ca: IssuedCert;
  let source: FakeBundleGetter;
  let spiffeEp: RunningBundleEndpoint;
  let webEp: RunningBundleEndpoint;
  const endpointId = `spiffe://${LOCAL_TD.name}/spiffe-broker`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-interop-'));
    ca = await makeCa();
    source = new FakeBundleGetter(await makeBundle({ cas: [ca, await makeCa()], sequence: 12n, jwt: 2 }));
    const local = new LocalBundle({ source, trustDomain: LOCAL_TD, refreshHintSeconds: 120 });
    await local.refresh();
    spiffeEp = await startBundleEndpoint(
      {
        host: '127.0.0.1',
        port: 0,
        local,
        credentials: new MintedSvidCredentials({
          minter: new CaMinter(ca, { now: () => Date.now() }),
          spiffeId: SpiffeId.parse(endpointId),
        }),
      },
      stop.signal,
    );
  });

  afterAll(async () => {
    stop.abort();
    await rm(dir, { recursive: true, force: true });
  });

  it('https_spiffe: fetches exactly the source bundle, sequence and refresh hint', async () => {
    const bootstrap = join(dir, 'bootstrap.json');
    await writeFile(bootstrap, marshalBundle(source.bundle!));
    const got = await goFetch(LOCAL_TD.name, spiffeEp.url, {
      profile: 'https_spiffe',
      endpointId,
      bundleFile: bootstrap,
    });
    expectSameBundle(got.bundle, source.bundle!);
    expect(got.sequence).toBe(12n);
    expect(got.refreshHintSeconds).toBe(120);
  });

  it('https_spiffe: go-spiffe refuses the endpoint for another expected ID (the check is real)', async () => {
    const bootstrap = join(dir, 'bootstrap.json');
    await writeFile(bootstrap, marshalBundle(source.bundle!));
    await expect(
      goFetch(LOCAL_TD.name, spiffeEp.url, {
        profile: 'https_spiffe',
        endpointId: `spiffe://${LOCAL_TD.name}/somebody-else`,
        bundleFile: bootstrap,
      }),
    ).rejects.toThrow(/unexpected ID|certificate/i);
  });

  it('https_web: fetches the bundle through a test CA', async () => {
    const webCa = await makeCa(TrustDomain.parse('web-ca.test'));
    const cert = await webCert(webCa);
    await writeFile(join(dir, 'tls.crt'), cert.pem);
    await writeFile(join(dir, 'tls.key'), cert.privateKeyPem!);
    await writeFile(join(dir, 'ca.pem'), webCa.pem);
    const local = new LocalBundle({ source, trustDomain: LOCAL_TD });
    await local.refresh();
    webEp = await startBundleEndpoint(
      {
        host: '127.0.0.1',
        port: 0,
        local,
        credentials: new FileTlsCredentials({
          certFile: join(dir, 'tls.crt'),
          keyFile: join(dir, 'tls.key'),
        }),
      },
      stop.signal,
    );
    const got = await goFetch(LOCAL_TD.name, `https://localhost:${webEp.port}/`, {
      profile: 'https_web',
      caFile: join(dir, 'ca.pem'),
    });
    expectSameBundle(got.bundle, source.bundle!);
    expect(got.refreshHintSeconds).toBe(300);
  });
});

describe.skipIf(!haveSpire || !haveGoFetch)(
  'real spire-server: source, SVID issuer and federating peer',
  () => {
    const stop = new AbortController();
    const ours = 'broker-src.test';
    const endpointId = `spiffe://${ours}/spiffe-broker`;
    let dir: string;
    let a: SpireServerInstance;
    let b: SpireServerInstance;
    let client: SpireServerClient;
    let local: LocalBundle;
    let spiffeEp: RunningBundleEndpoint;
    let webEp: RunningBundleEndpoint;
    let webCaFile: string;
    const pollStop = new AbortController();

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sb-spire-'));
      a = await startSpireServer({ trustDomain: ours, logLevel: 'WARN' });
      client = new SpireServerClient({ address: a.address });
      local = new LocalBundle({ source: client, trustDomain: TrustDomain.parse(ours), pollIntervalMs: 250 });
      void local.run(pollStop.signal);
      await local.ready();
      spiffeEp = await startBundleEndpoint(
        {
          host: '127.0.0.1',
          port: 0,
          local,
          credentials: new MintedSvidCredentials({ minter: client, spiffeId: SpiffeId.parse(endpointId) }),
        },
        stop.signal,
      );
      // https_web endpoint with a test CA that the peer trusts through SSL_CERT_FILE.
      const webCa = await makeCa(TrustDomain.parse('web-ca.test'));
      const cert = await webCert(webCa);
      await writeFile(join(dir, 'tls.crt'), cert.pem);
      await writeFile(join(dir, 'tls.key'), cert.privateKeyPem!);
      webCaFile = join(dir, 'ca.pem');
      await writeFile(webCaFile, webCa.pem);
      webEp = await startBundleEndpoint(
        {
          host: '127.0.0.1',
          port: 0,
          local,
          credentials: new FileTlsCredentials({
            certFile: join(dir, 'tls.crt'),
            keyFile: join(dir, 'tls.key'),
          }),
        },
        stop.signal,
      );
      // The peer's Go TLS stack reads SSL_CERT_FILE at start: only the test CA is a system root there.
      const saved = process.env.SSL_CERT_FILE;
      process.env.SSL_CERT_FILE = webCaFile;
      try {
        b = await startSpireServer({ trustDomain: 'broker-peer.test', logLevel: 'WARN' });
      } finally {
        if (saved === undefined) delete process.env.SSL_CERT_FILE;
        else process.env.SSL_CERT_FILE = saved;
      }
    }, 120_000);

    afterAll(async () => {
      stop.abort();
      pollStop.abort();
      client?.close();
      await Promise.all([a?.stop(), b?.stop()]);
      await rm(dir, { recursive: true, force: true });
    });

    it('serves exactly what SPIRE’s GetBundle holds, to go-spiffe over https_spiffe with a SPIRE-minted SVID', async () => {
      const held = await client.getBundle();
      const bootstrap = join(dir, 'a-bundle.json');
      await writeFile(bootstrap, await a.bundleShow());
      const got = await goFetch(ours, spiffeEp.url, {
        profile: 'https_spiffe',
        endpointId,
        bundleFile: bootstrap,
      });
      expectSameBundle(got.bundle, held);
      expect(got.sequence).toBe(held.sequence);
      expect(got.refreshHintSeconds).toBe(300);
    });

    it('publishes a rotation within a few polls, and a federating spire-server accepts it (https_spiffe)', async () => {
      const bootstrap = join(dir, 'bootstrap.json');
      await writeFile(bootstrap, await a.bundleShow());
      const before = local.current()!;
      // Rotate: a prepared X.509 authority enters the bundle (sequence bumps).
      await a.prepareAuthority('x509');
      const after = await client.getBundle();
      expect(after.x509Authorities.length).toBeGreaterThan(before.bundle.x509Authorities.length);
      const deadline = Date.now() + 10_000;
      while (local.current()!.version === before.version && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expectSameBundle(local.current()!.bundle, after);

      await b.cliOk([
        'federation',
        'create',
        '-trustDomain',
        ours,
        '-bundleEndpointURL',
        spiffeEp.url,
        '-bundleEndpointProfile',
        'https_spiffe',
        '-endpointSpiffeID',
        endpointId,
        '-trustDomainBundlePath',
        bootstrap,
        '-trustDomainBundleFormat',
        'spiffe',
      ]);
      // The bootstrap predates the rotation, so only a fetch from our endpoint can bring the new CA.
      await b.cliOk(['federation', 'refresh', '-id', `spiffe://${ours}`]);
      const stored = parseBundle(
        TrustDomain.parse(ours),
        await b.cliOk(['bundle', 'list', '-id', `spiffe://${ours}`, '-format', 'spiffe']),
      ).bundle;
      // SPIRE's federation client does not read spiffe_sequence (spire-server-api.md §6).
      expectSameBundle(stored, after, false);
      expect(stored.refreshHint).toBe(300);
    });

    it('a spire-server federating over https_web (test CA via SSL_CERT_FILE) accepts our bundle', async () => {
      await b.cliOk(['federation', 'delete', '-id', `spiffe://${ours}`]);
      await b.cli(['bundle', 'delete', '-id', `spiffe://${ours}`, '-mode', 'delete']);
      await b.cliOk([
        'federation',
        'create',
        '-trustDomain',
        ours,
        '-bundleEndpointURL',
        `https://localhost:${webEp.port}/`,
        '-bundleEndpointProfile',
        'https_web',
      ]);
      await b.cliOk(['federation', 'refresh', '-id', `spiffe://${ours}`]);
      const stored = parseBundle(
        TrustDomain.parse(ours),
        await b.cliOk(['bundle', 'list', '-id', `spiffe://${ours}`, '-format', 'spiffe']),
      ).bundle;
      expectSameBundle(stored, await client.getBundle(), false);
    });
  },
);
