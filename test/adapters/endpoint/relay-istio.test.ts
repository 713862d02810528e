/**
 * The per-peer relay read by Istio's own SPIFFE bundle fetcher: istio.io/istio/pkg/spiffe
 * RetrieveSpiffeBundleRootCerts (scripts/go/istio-relay, built by scripts/install-istio-relay.sh),
 * what istiod runs for MeshConfig `caCertificates[].spiffeBundleUrl`, against the broker's real
 * HTTPS bundle endpoint (https_web: Istio authenticates the URL's host name with WebPKI roots).
 * go-spiffe's federation.FetchBundle reads the same URL as a SPIFFE client. Istio's documented
 * rules (https; at least one x509-svid key, each with exactly one x5c) are also checked here.
 *
 * Skips loudly without the programs; fails instead with CI=true.
 */

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBundle } from '../../../src/adapters/endpoint/local-bundle.js';
import { type RunningBundleEndpoint, startBundleEndpoint } from '../../../src/adapters/endpoint/server.js';
import { FileTlsCredentials } from '../../../src/adapters/endpoint/tls-credentials.js';
import { createX509Svid } from '../../../src/adapters/pki/index.js';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { FakeBundleGetter, LOCAL_TD, makeBundle, makeCa, NOT_AFTER, NOT_BEFORE } from './fixtures.js';
import { goFetch, goFetchOrSkip } from './go-fetch.js';

function istioBinary(): string {
  const cache = process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
  return join(cache, 'bin', 'istio-relay');
}

function istioOrSkip(suite: string): boolean {
  const path = istioBinary();
  if (existsSync(path)) return true;
  const message = `Istio bundle fetcher missing for "${suite}": ${path} (run scripts/install-istio-relay.sh)`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead of skipping)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPING ${message}\n${'!'.repeat(100)}\n`);
  return false;
}

const haveIstio = istioOrSkip('relay read by Istio');
const haveGoFetch = goFetchOrSkip('relay read by go-spiffe');

const PEER = TrustDomain.parse('peer.test');
const SECOND = TrustDomain.parse('second.test');
const JWT_ONLY = TrustDomain.parse('jwt-only.test');
const HIDDEN = TrustDomain.parse('hidden.test');

/** Istio's rules for a spiffeBundleUrl document, as documented and as its fetcher applies them. */
function istioRuleProblems(doc: { keys?: { use?: string; x5c?: unknown[] }[] }): string[] {
  const problems: string[] = [];
  const x509 = (doc.keys ?? []).filter((k) => k.use === 'x509-svid');
  if (x509.length === 0) problems.push('no x509-svid key');
  x509.forEach((k, i) => {
    if (!Array.isArray(k.x5c) || k.x5c.length !== 1)
      problems.push(`x509-svid entry ${i} has not exactly one x5c`);
  });
  return problems;
}

describe.skipIf(!haveIstio)('relay: Istio fetches relayed peer bundles (MeshConfig spiffeBundleUrl)', () => {
  const stop = new AbortController();
  let dir: string;
  let caFile: string;
  let ep: RunningBundleEndpoint;
  let store: FederatedBundleStore;

  const istio = (entries: Record<string, string>): Promise<Record<string, string[]>> =>
    new Promise((resolve, reject) => {
      const args = [
        '-caFile',
        caFile,
        '-retry',
        '0s',
        ...Object.entries(entries).map(([td, u]) => `${td}=${u}`),
      ];
      execFile(istioBinary(), args, { timeout: 30_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(stderr.trim() || err.message));
        else {
          // Istio's logger writes to stdout too: the result is the last line.
          const last = stdout.trim().split('\n').at(-1) ?? '';
          resolve(JSON.parse(last) as Record<string, string[]>);
        }
      });
    });
  const url = (td: TrustDomain) => `https://localhost:${ep.port}/bundles/${td.name}`;

  beforeAll(async () => {
    dir = await mkdtemp('/tmp/relay-');
    const webCa = await makeCa(TrustDomain.parse('web-ca.test'));
    const cert = await createX509Svid({
      id: SpiffeId.parse(`spiffe://${LOCAL_TD.name}/web`),
      issuer: webCa,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      dnsNames: ['localhost'],
    });
    caFile = join(dir, 'ca.pem');
    await writeFile(caFile, webCa.pem);
    await writeFile(join(dir, 'tls.crt'), cert.pem);
    await writeFile(join(dir, 'tls.key'), cert.privateKeyPem!);
    const local = new LocalBundle({
      source: new FakeBundleGetter(await makeBundle()),
      trustDomain: LOCAL_TD,
    });
    await local.refresh();
    store = new FederatedBundleStore();
    const peerCas = [await makeCa(PEER), await makeCa(PEER)];
    store.set(await makeBundle({ td: PEER, cas: peerCas, sequence: 3n, refreshHint: 60 }));
    store.set(await makeBundle({ td: SECOND, sequence: 1n }));
    store.set(await makeBundle({ td: HIDDEN, sequence: 1n }));
    store.set(
      TrustBundle.create({
        trustDomain: JWT_ONLY,
        jwtAuthorities: [jwtAuthority('k1', keyPairSync('ec', { namedCurve: 'P-256' }).publicKey)],
      }),
    );
    const relayed = new Set([PEER.name, SECOND.name, JWT_ONLY.name]);
    ep = await startBundleEndpoint(
      {
        host: '127.0.0.1',
        port: 0,
        local,
        credentials: new FileTlsCredentials({
          certFile: join(dir, 'tls.crt'),
          keyFile: join(dir, 'tls.key'),
        }),
        relay: {
          bundle: (td) => (relayed.has(td) ? store.get(td) : undefined),
          subscribe: (listener) => store.subscribe((c) => listener(c.trustDomain)),
        },
      },
      stop.signal,
    );
  });

  afterAll(async () => {
    stop.abort();
    await ep?.closed;
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('Istio loads the X.509 authorities of two relayed peers from the broker', async () => {
    const got = await istio({ [PEER.name]: url(PEER), [SECOND.name]: url(SECOND) });
    const b64 = (td: TrustDomain) =>
      store.get(td.name)!.x509Authorities.map((a) => Buffer.from(a.der).toString('base64'));
    expect(got[PEER.name]).toEqual(b64(PEER));
    expect(got[PEER.name]).toHaveLength(2);
    expect(got[SECOND.name]).toEqual(b64(SECOND));
  });

  it('the relayed document meets Istio documented rules', async () => {
    for (const td of [PEER, SECOND]) {
      const app = ep.app;
      const doc = (await app.inject({ url: `/bundles/${td.name}` })).json();
      expect(istioRuleProblems(doc)).toEqual([]);
    }
    expect(istioRuleProblems((await ep.app.inject({ url: `/bundles/${JWT_ONLY.name}` })).json())).toEqual([
      'no x509-svid key',
    ]);
  });

  it('Istio refuses a relayed bundle with no X.509 authority, as its rules say', async () => {
    await expect(istio({ [JWT_ONLY.name]: url(JWT_ONLY) })).rejects.toThrow(/does not provide a X509 SVID/);
  });

  it('Istio gets nothing for a peer that is not relayed (404)', async () => {
    await expect(istio({ [HIDDEN.name]: url(HIDDEN) })).rejects.toThrow(/404.*ERR_ENDPOINT_RELAY_NOT_FOUND/);
  });

  it('Istio refuses the relay over plain http (its fetcher speaks https only)', async () => {
    await expect(
      istio({ [PEER.name]: `http://localhost:${ep.port}/bundles/${PEER.name}` }),
    ).rejects.toThrow();
  });

  it.skipIf(!haveGoFetch)(
    'go-spiffe federation.FetchBundle reads the relayed bundle as a SPIFFE client',
    async () => {
      const got = await goFetch(PEER.name, url(PEER), { profile: 'https_web', caFile });
      const want = store.get(PEER.name)!;
      expect(got.sequence).toBe(3n);
      expect(got.refreshHintSeconds).toBe(60);
      expect(got.bundle.x509Authorities.map((a) => a.sha256)).toEqual(
        want.x509Authorities.map((a) => a.sha256),
      );
      expect([...got.bundle.jwtAuthorities.keys()]).toEqual([...want.jwtAuthorities.keys()]);
    },
  );

  it('a relayed peer rotation is what Istio reads next', async () => {
    const before = (await istio({ [PEER.name]: url(PEER) }))[PEER.name];
    const rotated = await makeBundle({ td: PEER, sequence: 4n });
    store.set(rotated);
    const after = (await istio({ [PEER.name]: url(PEER) }))[PEER.name];
    expect(after).not.toEqual(before);
    expect(after).toEqual(rotated.x509Authorities.map((a) => Buffer.from(a.der).toString('base64')));
  });
});
