import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { IssuedCert } from '../../../src/adapters/pki/index.js';
import { marshalBundle } from '../../../src/core/bundle/codec.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { fetchPeerBundle } from '../../../src/engine/federation/fetch.js';
import { tlsSessions } from '../../../src/engine/federation/tls.js';
import { FetchError } from '../../../src/errors.js';
import { id, makeBundle, makeCa, makeSvid, td } from './helpers.js';

// Issue 13 item 1: https_web polls resume TLS sessions (an abbreviated handshake instead of a full
// one), without weakening verification: a rotated CA set never resumes a session verified under
// the old one, and https_spiffe never resumes — its SPIFFE ID and chain are checked on every
// connection, so an endpoint whose SVID changed to another SPIFFE ID is refused.

let webCa: IssuedCert;
let otherCa: IssuedCert;
let webCert: IssuedCert;
let peerCa: IssuedCert;
let peerBundle: TrustBundle;
let svidA: IssuedCert;
let svidB: IssuedCert;

beforeAll(async () => {
  webCa = await makeCa('web-ca.test');
  otherCa = await makeCa('other-ca.test');
  webCert = await makeSvid(webCa, 'spiffe://web-ca.test/endpoint', { dnsNames: ['localhost'] });
  peerCa = await makeCa('peer.test');
  peerBundle = await makeBundle('peer.test', { cas: [peerCa], sequence: 3n });
  svidA = await makeSvid(peerCa, 'spiffe://peer.test/spire/server');
  svidB = await makeSvid(peerCa, 'spiffe://peer.test/someone-else');
});

const servers: https.Server[] = [];
beforeEach(() => tlsSessions.clear());
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** An HTTPS bundle endpoint that records, per request, whether its TLS session was resumed. */
async function serve(cert: IssuedCert): Promise<{ url: string; resumed: boolean[]; server: https.Server }> {
  const resumed: boolean[] = [];
  const body = marshalBundle(peerBundle);
  const server = https.createServer(
    { cert: cert.pem, key: cert.privateKeyPem!, minVersion: 'TLSv1.2' },
    (req, res) => {
      resumed.push((req.socket as tls.TLSSocket).isSessionReused());
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' }).end(body);
    },
  );
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `https://localhost:${(server.address() as AddressInfo).port}/`, resumed, server };
}

const web = (url: string, caPem: string) =>
  fetchPeerBundle(
    { trustDomain: td('peer.test'), urls: [new URL(url)], profile: { kind: 'https_web', caPem } },
    { connect: (o) => tls.connect({ ...o, host: '127.0.0.1' }) },
  );

describe('TLS session resumption', () => {
  it('https_web: the second poll resumes the session of the first', async () => {
    const ep = await serve(webCert);
    expect((await web(ep.url, webCa.pem)).kind).toBe('bundle');
    expect((await web(ep.url, webCa.pem)).kind).toBe('bundle');
    expect(ep.resumed).toEqual([false, true]);
    expect(tlsSessions.size).toBe(1);
  });

  it('https_web: a rotated CA set never resumes a session verified under the old one', async () => {
    const ep = await serve(webCert);
    await web(ep.url, webCa.pem); // a session is cached under webCa
    // The operator's CA file now holds another CA, which did not issue the server's certificate.
    const err = await web(ep.url, otherCa.pem).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).code).toBe('ERR_FETCH_TLS');
    expect(ep.resumed).toEqual([false]);
  });

  it('https_spiffe: never resumed; an endpoint whose SVID changed to another SPIFFE ID is refused', async () => {
    const ep = await serve(svidA);
    const spiffe = () =>
      fetchPeerBundle(
        {
          trustDomain: td('peer.test'),
          urls: [new URL(ep.url)],
          profile: {
            kind: 'https_spiffe',
            endpointSpiffeId: id('spiffe://peer.test/spire/server'),
            bundles: peerBundle,
          },
        },
        { connect: (o) => tls.connect({ ...o, host: '127.0.0.1' }) },
      );
    expect((await spiffe()).kind).toBe('bundle');
    expect((await spiffe()).kind).toBe('bundle');
    // The endpoint now presents an SVID with another SPIFFE ID (same trust domain, same CA).
    ep.server.setSecureContext({ cert: svidB.pem, key: svidB.privateKeyPem! });
    const err = await spiffe().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).code).toBe('ERR_FETCH_ENDPOINT_ID');
    expect(ep.resumed).toEqual([false, false]);
    expect(tlsSessions.size).toBe(0);
  });
});
