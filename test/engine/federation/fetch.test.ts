import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCert } from '../../../src/adapters/pki/index.js';
import { createCa, createX509Svid } from '../../../src/adapters/pki/index.js';
import { marshalBundle } from '../../../src/core/bundle/codec.js';
import { bundlesEqual } from '../../../src/core/bundle/diff.js';
import { BundleSet } from '../../../src/core/bundle/source.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import {
  type FetchRequest,
  type FetchResult,
  fetchPeerBundle,
} from '../../../src/engine/federation/fetch.js';
import { BrokerError, BundleError, FetchError } from '../../../src/errors.js';
import { FakeBundleEndpoint, type FakeEndpointOptions, serveJson } from '../../fakes/fake-bundle-endpoint.js';
import { id, makeBundle, makeCa, makeSvid, NOT_AFTER, NOT_BEFORE, td } from './helpers.js';

const PEER = td('peer.test');
const SERVER_ID = 'spiffe://peer.test/spire/server';

/** Dials 127.0.0.1 whatever the URL host, counting connections; TLS checks still use the URL host. */
function dialer() {
  const calls: tls.ConnectionOptions[] = [];
  const connect = (o: tls.ConnectionOptions): tls.TLSSocket => {
    calls.push(o);
    return tls.connect({ ...o, host: '127.0.0.1' });
  };
  return { calls, connect };
}

let peerCa: IssuedCert;
let peerBundle: TrustBundle;
let peerJson: string;
let serverSvid: IssuedCert;
let webCa: IssuedCert;
let webCert: IssuedCert;

const servers: FakeBundleEndpoint[] = [];
async function endpoint(
  cert: IssuedCert,
  handler: FakeEndpointOptions['handler'],
  extra: Partial<FakeEndpointOptions> = {},
  chainPem = cert.pem,
): Promise<FakeBundleEndpoint> {
  const ep = await FakeBundleEndpoint.start({
    certPem: chainPem,
    keyPem: cert.privateKeyPem!,
    handler,
    ...extra,
  });
  servers.push(ep);
  return ep;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

beforeAll(async () => {
  peerCa = await makeCa('peer.test');
  peerBundle = await makeBundle('peer.test', { cas: [peerCa], sequence: 7n, refreshHint: 120 });
  peerJson = marshalBundle(peerBundle);
  serverSvid = await makeSvid(peerCa, SERVER_ID);
  webCa = await makeCa('web-ca.test');
  webCert = await makeSvid(webCa, 'spiffe://web-ca.test/endpoint', { dnsNames: ['localhost'] });
});

function spiffeReq(urls: string[], extra: Partial<FetchRequest> = {}): FetchRequest {
  return {
    trustDomain: PEER,
    urls,
    profile: { kind: 'https_spiffe', endpointSpiffeId: id(SERVER_ID), bundles: peerBundle },
    ...extra,
  };
}

function webReq(urls: string[], extra: Partial<FetchRequest> = {}): FetchRequest {
  return { trustDomain: PEER, urls, profile: { kind: 'https_web', caPem: webCa.pem }, ...extra };
}

async function failure(p: Promise<FetchResult>): Promise<BrokerError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BrokerError);
  return err as BrokerError;
}

async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('fetchPeerBundle: https_spiffe', () => {
  it('fetches, authenticates the X509-SVID, parses for the configured trust domain', async () => {
    const ep = await endpoint(serverSvid, serveJson(peerJson, { ETag: '"s7"' }));
    const r = await fetchPeerBundle(spiffeReq([ep.url()]));
    expect(r.kind).toBe('bundle');
    if (r.kind !== 'bundle') return;
    expect(bundlesEqual(r.bundle, peerBundle)).toBe(true);
    expect(r.bundle.trustDomain.name).toBe('peer.test');
    expect(r.bundle.sequence).toBe(7n);
    expect(r).toMatchObject({
      etag: '"s7"',
      url: ep.url(),
      bytes: peerJson.length,
      supportsLongPoll: false,
      failovers: [],
    });
    expect(ep.requests[0]?.headers['if-none-match']).toBeUndefined();
    expect(ep.requests[0]?.headers.prefer).toBeUndefined();
  });

  it('uses the latest bundle from a live source at every connection (rotation, §5.2.2.4)', async () => {
    const newCa = await makeCa('peer.test');
    const rotatedSvid = await makeSvid(newCa, SERVER_ID);
    const ep = await endpoint(rotatedSvid, serveJson(peerJson));
    const source = new BundleSet([peerBundle]);
    const req = spiffeReq([ep.url()], {
      profile: { kind: 'https_spiffe', endpointSpiffeId: id(SERVER_ID), bundles: source },
    });
    const before = await failure(fetchPeerBundle(req));
    expect(before.code).toBe('ERR_FETCH_TLS');
    expect(ep.requests).toHaveLength(0);
    source.set(await makeBundle('peer.test', { cas: [peerCa, newCa] }));
    const after = await fetchPeerBundle(req);
    expect(after.kind).toBe('bundle');
  });

  const refusals: [string, () => Promise<IssuedCert>, string, RegExp][] = [
    [
      'an SVID for another ID',
      () => makeSvid(peerCa, 'spiffe://peer.test/not-the-server'),
      'ERR_FETCH_ENDPOINT_ID',
      /ERR_VERIFY_ID_NOT_AUTHORIZED/,
    ],
    [
      'an SVID from another trust domain',
      async () => makeSvid(await makeCa('other.test'), 'spiffe://other.test/spire/server'),
      'ERR_FETCH_ENDPOINT_ID',
      /other\.test/,
    ],
    [
      'an expired SVID',
      () =>
        createX509Svid({
          id: id(SERVER_ID),
          issuer: peerCa,
          notBefore: new Date('2025-01-01T00:00:00Z'),
          notAfter: new Date('2025-01-02T00:00:00Z'),
        }),
      'ERR_FETCH_TLS',
      /ERR_VERIFY_X509_EXPIRED/,
    ],
    [
      'a certificate from an untrusted CA with the right ID',
      async () => makeSvid(await makeCa('peer.test'), SERVER_ID),
      'ERR_FETCH_TLS',
      /ERR_VERIFY_X509_UNTRUSTED/,
    ],
  ];
  for (const [what, make, code, detail] of refusals) {
    it(`refuses ${what} (${code}) before sending any HTTP`, async () => {
      const ep = await endpoint(await make(), serveJson(peerJson));
      const err = await failure(fetchPeerBundle(spiffeReq([ep.url()])));
      expect(err).toBeInstanceOf(FetchError);
      expect(err.code).toBe(code);
      expect(err.message).toMatch(detail);
      expect(err.message).toContain(ep.url());
      expect(ep.connections).toBe(1);
      expect(ep.requests).toEqual([]);
    });
  }

  it('does not check the host name in this profile (the SPIFFE ID is the identity)', async () => {
    const ep = await endpoint(serverSvid, serveJson(peerJson));
    const { connect } = dialer();
    const r = await fetchPeerBundle(spiffeReq([`https://bundles.elsewhere.invalid:${ep.port}/`]), {
      connect,
    });
    expect(r.kind).toBe('bundle');
  });

  it('without a bundle for the endpoint trust domain: ERR_FETCH_NO_BOOTSTRAP_BUNDLE, nothing dialled, no failover', async () => {
    const { calls, connect } = dialer();
    const err = await failure(
      fetchPeerBundle(
        spiffeReq(['https://a.invalid/', 'https://b.invalid/'], {
          profile: { kind: 'https_spiffe', endpointSpiffeId: id(SERVER_ID), bundles: new BundleSet() },
        }),
        { connect },
      ),
    );
    expect(err.code).toBe('ERR_FETCH_NO_BOOTSTRAP_BUNDLE');
    expect(calls).toEqual([]);
  });

  it('authenticates a non-self-serving endpoint with its own trust domain bundle', async () => {
    const hostCa = await makeCa('host.test');
    const hostSvid = await makeSvid(hostCa, 'spiffe://host.test/bundle-server');
    const ep = await endpoint(hostSvid, serveJson(peerJson));
    const bundles = new BundleSet([await makeBundle('host.test', { cas: [hostCa] })]);
    const r = await fetchPeerBundle(
      spiffeReq([ep.url()], {
        profile: { kind: 'https_spiffe', endpointSpiffeId: id('spiffe://host.test/bundle-server'), bundles },
      }),
    );
    expect(r.kind === 'bundle' && r.bundle.trustDomain.name).toBe('peer.test');
  });

  it('serves through an intermediate CA chain', async () => {
    const inter = await createCa({
      trustDomain: PEER,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      issuer: peerCa,
    });
    const leaf = await makeSvid(inter, SERVER_ID);
    const ep = await endpoint(leaf, serveJson(peerJson), {}, leaf.pem + inter.pem);
    expect((await fetchPeerBundle(spiffeReq([ep.url()]))).kind).toBe('bundle');
  });
});

describe('fetchPeerBundle: https_web', () => {
  it('verifies the chain against the configured CA and the URL host name (RFC 6125)', async () => {
    const ep = await endpoint(webCert, serveJson(peerJson));
    const { connect, calls } = dialer();
    const r = await fetchPeerBundle(webReq([ep.localhostUrl()]), { connect });
    expect(r.kind).toBe('bundle');
    expect(calls[0]).toMatchObject({
      servername: 'localhost',
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
    });
    expect(calls[0]?.cert).toBeUndefined();
  });

  it('refuses an untrusted CA (ERR_FETCH_TLS), nothing sent', async () => {
    const ep = await endpoint(webCert, serveJson(peerJson));
    const { connect } = dialer();
    const other = await makeCa('unrelated.test');
    const err = await failure(
      fetchPeerBundle(
        { ...webReq([ep.localhostUrl()]), profile: { kind: 'https_web', caPem: other.pem } },
        { connect },
      ),
    );
    expect(err.code).toBe('ERR_FETCH_TLS');
    expect(ep.requests).toEqual([]);
  });

  it('refuses the default roots for a private CA (ERR_FETCH_TLS)', async () => {
    const ep = await endpoint(webCert, serveJson(peerJson));
    const { connect } = dialer();
    const err = await failure(
      fetchPeerBundle({ ...webReq([ep.localhostUrl()]), profile: { kind: 'https_web' } }, { connect }),
    );
    expect(err.code).toBe('ERR_FETCH_TLS');
  });

  it('refuses a wrong host name (ERR_FETCH_TLS), nothing sent', async () => {
    const wrong = await makeSvid(webCa, 'spiffe://web-ca.test/endpoint', {
      dnsNames: ['bundles.example.org'],
    });
    const ep = await endpoint(wrong, serveJson(peerJson));
    const { connect } = dialer();
    const err = await failure(fetchPeerBundle(webReq([ep.localhostUrl()]), { connect }));
    expect(err.code).toBe('ERR_FETCH_TLS');
    expect(err.message).toMatch(/localhost/);
    expect(ep.requests).toEqual([]);
  });

  it('sends no client certificate: fine when the server only asks, refused when it requires one (W4)', async () => {
    const asks = await endpoint(webCert, serveJson(peerJson), { requestCert: true, clientCaPem: webCa.pem });
    const { connect } = dialer();
    expect((await fetchPeerBundle(webReq([asks.localhostUrl()]), { connect })).kind).toBe('bundle');
    const requires = await endpoint(webCert, serveJson(peerJson), {
      requestCert: true,
      requireClientCert: true,
      clientCaPem: webCa.pem,
    });
    const err = await failure(fetchPeerBundle(webReq([requires.localhostUrl()]), { connect }));
    expect(err.code).toBe('ERR_FETCH_TLS');
    expect(requires.requests).toEqual([]);
  });
});

describe('fetchPeerBundle: URLs and failover', () => {
  it('refuses http:// up front (ERR_FETCH_INSECURE_SCHEME) without connecting anywhere', async () => {
    const { calls, connect } = dialer();
    const err = await failure(
      fetchPeerBundle(webReq(['https://ok.invalid/', 'http://peer.test/']), { connect }),
    );
    expect(err.code).toBe('ERR_FETCH_INSECURE_SCHEME');
    expect(calls).toEqual([]);
  });

  it('refuses userinfo and other schemes (ERR_FETCH_URL) without echoing the password', async () => {
    const err = await failure(fetchPeerBundle(webReq(['https://user:secret@peer.test/'])));
    expect(err.code).toBe('ERR_FETCH_URL');
    expect(err.message).not.toContain('secret');
    expect((await failure(fetchPeerBundle(webReq(['ftp://peer.test/'])))).code).toBe('ERR_FETCH_URL');
    expect((await failure(fetchPeerBundle(webReq(['not a url'])))).code).toBe('ERR_FETCH_URL');
  });

  it('peer down (connection refused) → fails over to the second URL and reports the first', async () => {
    const down = await closedPort();
    const ep = await endpoint(serverSvid, serveJson(peerJson));
    const r = await fetchPeerBundle(spiffeReq([`https://127.0.0.1:${down}/`, ep.url()]));
    expect(r.kind).toBe('bundle');
    expect(r.url).toBe(ep.url());
    expect(r.failovers).toHaveLength(1);
    expect(r.failovers[0]).toMatchObject({ url: `https://127.0.0.1:${down}/`, code: 'ERR_FETCH_CONNECT' });
  });

  it('5xx → ERR_FETCH_STATUS with status and bounded body; fails over', async () => {
    const bad = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(503);
      res.end(`overloaded\u0007${'x'.repeat(5000)}`);
    });
    const only = await failure(fetchPeerBundle(spiffeReq([bad.url()])));
    expect(only.code).toBe('ERR_FETCH_STATUS');
    expect(only.message).toMatch(/unexpected status 503 fetching bundle: overloaded\?x+/);
    expect(only.message.length).toBeLessThan(1200);
    const good = await endpoint(serverSvid, serveJson(peerJson));
    const r = await fetchPeerBundle(spiffeReq([bad.url(), good.url()]));
    expect(r.failovers.map((f) => f.code)).toEqual(['ERR_FETCH_STATUS']);
  });

  it('every URL failing → the last error, same code, earlier ones listed', async () => {
    const down = await closedPort();
    const bad = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(404);
      res.end('404 page not found\n');
    });
    const err = await failure(fetchPeerBundle(spiffeReq([`https://127.0.0.1:${down}/`, bad.url()])));
    expect(err.code).toBe('ERR_FETCH_STATUS');
    expect(err.message).toContain('all 2 URLs failed');
    expect(err.message).toContain('ERR_FETCH_CONNECT');
  });

  it('garbage body → BundleError naming the URL; fails over', async () => {
    const bad = await endpoint(serverSvid, serveJson('<html>hello</html>'));
    const err = await failure(fetchPeerBundle(spiffeReq([bad.url()])));
    expect(err).toBeInstanceOf(BundleError);
    expect(err.code).toBe('ERR_BUNDLE_JSON_SYNTAX');
    expect(err.message).toContain(bad.url());
  });

  it('x5c / JWK mismatch → ERR_BUNDLE_X5C_KEY_MISMATCH', async () => {
    const other = await makeBundle('peer.test', { jwt: 0 });
    const a = JSON.parse(peerJson) as { keys: Record<string, unknown>[] };
    const b = JSON.parse(marshalBundle(other)) as { keys: Record<string, unknown>[] };
    a.keys[0]!.x = b.keys[0]!.x;
    a.keys[0]!.y = b.keys[0]!.y;
    const ep = await endpoint(serverSvid, serveJson(JSON.stringify(a)));
    const err = await failure(fetchPeerBundle(spiffeReq([ep.url()])));
    expect(err.code).toBe('ERR_BUNDLE_X5C_KEY_MISMATCH');
  });

  it('malformed HTTP → ERR_FETCH_PROTOCOL', async () => {
    const ep = await endpoint(serverSvid, (req) => {
      req.socket.end('NOT HTTP AT ALL\r\n\r\n');
    });
    const err = await failure(fetchPeerBundle(spiffeReq([ep.url()])));
    expect(err.code).toBe('ERR_FETCH_PROTOCOL');
  });

  it('a body cut short of its Content-Length → ERR_FETCH_PROTOCOL', async () => {
    const ep = await endpoint(serverSvid, (req, res) => {
      res.writeHead(200, { 'Content-Length': String(peerJson.length + 100) });
      res.write(peerJson);
      setTimeout(() => req.socket.destroy(), 20);
    });
    const err = await failure(fetchPeerBundle(spiffeReq([ep.url()])));
    expect(err.code).toBe('ERR_FETCH_PROTOCOL');
  });
});

describe('fetchPeerBundle: limits', () => {
  it('a trickling body is cut off by the overall timeout (ERR_FETCH_TIMEOUT)', async () => {
    let sent = 0;
    const ep = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(200, { 'Content-Length': String(peerJson.length) });
      const t = setInterval(() => {
        if (sent < peerJson.length) res.write(peerJson[sent++]!);
      }, 10);
      ep.onClose(() => clearInterval(t));
      res.on('close', () => clearInterval(t));
    });
    const err = await failure(fetchPeerBundle(spiffeReq([ep.url()], { limits: { timeoutMs: 300 } })));
    expect(err.code).toBe('ERR_FETCH_TIMEOUT');
    expect(sent).toBeLessThan(peerJson.length);
  });

  it('a server that never completes the TLS handshake hits the connect timeout', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as AddressInfo).port;
      const err = await failure(
        fetchPeerBundle(spiffeReq([`https://127.0.0.1:${port}/`], { limits: { connectTimeoutMs: 200 } })),
      );
      expect(err.code).toBe('ERR_FETCH_TIMEOUT');
      expect(err.message).toMatch(/connecting/);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('Content-Length above the cap fails before reading', async () => {
    let wrote = false;
    const ep = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(200, { 'Content-Length': String(2 * 1024 * 1024) });
      res.flushHeaders();
      setTimeout(() => {
        wrote = true;
        res.end('x'.repeat(2 * 1024 * 1024));
      }, 200);
    });
    const err = await failure(fetchPeerBundle(spiffeReq([ep.url()])));
    expect(err.code).toBe('ERR_FETCH_BODY_TOO_LARGE');
    expect(err.message).toMatch(/Content-Length 2097152/);
    expect(wrote).toBe(false);
  });

  it('a chunked body past the cap is cut while reading (no Content-Length)', async () => {
    let written = 0;
    let closedAt: number | undefined;
    const chunk = 'y'.repeat(16 * 1024);
    const ep = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.on('close', () => {
        closedAt = written;
      });
      const pump = (): void => {
        while (!res.destroyed && written < 64 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const err = await failure(
      fetchPeerBundle(spiffeReq([ep.url()], { limits: { maxBodyBytes: 256 * 1024 } })),
    );
    expect(err.code).toBe('ERR_FETCH_BODY_TOO_LARGE');
    await new Promise((r) => setTimeout(r, 50));
    // The client hung up long before the server's 64 MiB were through.
    expect(closedAt ?? written).toBeLessThan(16 * 1024 * 1024);
  });

  it('a ~5 MB x5c under a raised cap is a coded bundle error, never ERR_FETCH_CONNECT', async () => {
    // It used to overflow a regular expression (an uncoded RangeError, reported as a connect failure).
    const body = JSON.stringify({
      keys: [
        { use: 'x509-svid', kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA', x5c: ['A'.repeat(5 * 1024 * 1024)] },
      ],
    });
    const ep = await endpoint(serverSvid, serveJson(body));
    const err = await failure(
      fetchPeerBundle(spiffeReq([ep.url()], { limits: { maxBodyBytes: 8 * 1024 * 1024 } })),
    );
    expect(err.code).toBe('ERR_BUNDLE_X5C_CERTIFICATE');
  });

  it('the default cap is 1 MiB, also for a body exactly one byte over', async () => {
    const body = `${peerJson}${' '.repeat(1024 * 1024 + 1 - peerJson.length)}`;
    const ep = await endpoint(serverSvid, serveJson(body));
    expect((await failure(fetchPeerBundle(spiffeReq([ep.url()])))).code).toBe('ERR_FETCH_BODY_TOO_LARGE');
  });

  it('AbortSignal → ERR_FETCH_ABORTED, and no further URL is tried', async () => {
    const ac = new AbortController();
    const held = await endpoint(serverSvid, () => {
      ac.abort();
    });
    const spare = await endpoint(serverSvid, serveJson(peerJson));
    const err = await failure(fetchPeerBundle(spiffeReq([held.url(), spare.url()], { signal: ac.signal })));
    expect(err.code).toBe('ERR_FETCH_ABORTED');
    expect(spare.connections).toBe(0);
  });
});

describe('fetchPeerBundle: redirects', () => {
  it('follows an https redirect presenting the same SPIFFE ID, reports the configured URL', async () => {
    const target = await endpoint(serverSvid, serveJson(peerJson));
    const origin = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(302, { Location: target.url('/moved') });
      res.end();
    });
    const r = await fetchPeerBundle(spiffeReq([origin.url()], { etag: '"old"', waitSeconds: 5 }));
    expect(r.kind).toBe('bundle');
    expect(r.url).toBe(origin.url());
    expect(r.redirectedTo).toBe(target.url('/moved'));
    // The same conditional request at the target.
    expect(target.requests[0]?.headers['if-none-match']).toBe('"old"');
  });

  it('refuses a redirect to a different SPIFFE ID (ERR_FETCH_ENDPOINT_ID), nothing sent to it', async () => {
    const impostor = await endpoint(await makeSvid(peerCa, 'spiffe://peer.test/other'), serveJson(peerJson));
    const origin = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(307, { Location: impostor.url() });
      res.end();
    });
    const err = await failure(fetchPeerBundle(spiffeReq([origin.url()])));
    expect(err.code).toBe('ERR_FETCH_ENDPOINT_ID');
    expect(impostor.requests).toEqual([]);
  });

  it('refuses a redirect to http (ERR_FETCH_REDIRECT), nothing sent there', async () => {
    let plainHits = 0;
    const plain = http.createServer((_q, res) => {
      plainHits++;
      res.end(peerJson);
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    try {
      const port = (plain.address() as AddressInfo).port;
      const origin = await endpoint(serverSvid, (_q, res) => {
        res.writeHead(301, { Location: `http://127.0.0.1:${port}/` });
        res.end();
      });
      const err = await failure(fetchPeerBundle(spiffeReq([origin.url()])));
      expect(err.code).toBe('ERR_FETCH_REDIRECT');
      expect(err.message).toMatch(/http/);
      expect(plainHits).toBe(0);
    } finally {
      plain.close();
    }
  });

  it('stops after maxRedirects (a loop) with ERR_FETCH_REDIRECT', async () => {
    const loop = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(302, { Location: '/again' });
      res.end();
    });
    const err = await failure(fetchPeerBundle(spiffeReq([loop.url()], { limits: { maxRedirects: 2 } })));
    expect(err.code).toBe('ERR_FETCH_REDIRECT');
    expect(loop.requests).toHaveLength(3);
  });
});

describe('fetchPeerBundle: conditional GET and long-poll', () => {
  it('sends If-None-Match and Prefer: wait, and returns not-modified on 304', async () => {
    const ep = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(304, { ETag: '"s7"' });
      res.end();
    });
    const r = await fetchPeerBundle(spiffeReq([ep.url()], { etag: '"s7"', waitSeconds: 30 }));
    expect(r).toEqual({
      kind: 'not-modified',
      etag: '"s7"',
      url: ep.url(),
      supportsLongPoll: false,
      failovers: [],
    });
    expect(ep.requests[0]?.headers['if-none-match']).toBe('"s7"');
    expect(ep.requests[0]?.headers.prefer).toBe('wait=30');
  });

  it('a server honouring the wait (Preference-Applied) is reported, and the wait extends the deadline', async () => {
    const ep = await endpoint(serverSvid, (_q, res) => {
      const t = setTimeout(() => {
        res.writeHead(200, {
          ETag: '"s8"',
          'Preference-Applied': 'wait=2',
          'Content-Type': 'application/json',
        });
        res.end(peerJson);
      }, 400);
      ep.onClose(() => clearTimeout(t));
    });
    const r = await fetchPeerBundle(
      spiffeReq([ep.url()], { etag: '"s7"', waitSeconds: 2, limits: { timeoutMs: 100 } }),
    );
    expect(r).toMatchObject({ kind: 'bundle', etag: '"s8"', supportsLongPoll: true });
  });

  it('no Prefer without an ETag; a 304 to an unconditional request is refused', async () => {
    const ep = await endpoint(serverSvid, (_q, res) => {
      res.writeHead(304);
      res.end();
    });
    const err = await failure(fetchPeerBundle(spiffeReq([ep.url()], { waitSeconds: 30 })));
    expect(err.code).toBe('ERR_FETCH_STATUS');
    expect(ep.requests[0]?.headers.prefer).toBeUndefined();
  });

  it('API misuse is a TypeError', async () => {
    await expect(fetchPeerBundle(spiffeReq([]))).rejects.toThrow(TypeError);
    await expect(fetchPeerBundle(spiffeReq(['https://a.invalid/'], { waitSeconds: -1 }))).rejects.toThrow(
      TypeError,
    );
    await expect(fetchPeerBundle(spiffeReq(['https://a.invalid/'], { etag: 'a\r\nX: y' }))).rejects.toThrow(
      TypeError,
    );
  });
});
