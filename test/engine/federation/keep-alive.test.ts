import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { IssuedCert } from '../../../src/adapters/pki/index.js';
import { marshalBundle } from '../../../src/core/bundle/codec.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { type FetchProfile, fetchPeerBundle } from '../../../src/engine/federation/fetch.js';
import { connectionKey, REQUEST_SEND_FRAGMENT } from '../../../src/engine/federation/http.js';
import { IdleConnections } from '../../../src/engine/federation/idle-connections.js';
import { tlsSessions } from '../../../src/engine/federation/tls.js';
import { FetchError } from '../../../src/errors.js';
import { type Clock, systemClock } from '../../../src/platform/clock.js';
import { id, makeBundle, makeCa, makeSvid, td } from './helpers.js';

// Issue 13 item 1: a poll reuses the kept-alive connection of the previous one instead of paying
// a TCP and TLS handshake — without weakening verification. https_web: a connection is reused
// only under the CA set and host it was verified with. https_spiffe: the chain the server
// presented is checked again against the bundle held now, with the expected SPIFFE ID and the
// current time, before every reuse; a rotated bundle sends the poll to a new connection.

let webCa: IssuedCert;
let otherCa: IssuedCert;
let webCert: IssuedCert;
let peerCa: IssuedCert;
let newPeerCa: IssuedCert;
let peerBundle: TrustBundle;
let rotatedBundle: TrustBundle;
let svidA: IssuedCert;
let svidB: IssuedCert;
let svidNewCa: IssuedCert;

beforeAll(async () => {
  webCa = await makeCa('web-ca.test');
  otherCa = await makeCa('other-ca.test');
  webCert = await makeSvid(webCa, 'spiffe://web-ca.test/endpoint', { dnsNames: ['localhost'] });
  peerCa = await makeCa('peer.test');
  newPeerCa = await makeCa('peer.test');
  peerBundle = await makeBundle('peer.test', { cas: [peerCa], sequence: 3n });
  rotatedBundle = await makeBundle('peer.test', { cas: [newPeerCa], sequence: 4n });
  svidA = await makeSvid(peerCa, 'spiffe://peer.test/spire/server');
  svidB = await makeSvid(peerCa, 'spiffe://peer.test/someone-else');
  svidNewCa = await makeSvid(newPeerCa, 'spiffe://peer.test/spire/server');
});

const servers: https.Server[] = [];
let pool: IdleConnections;
beforeEach(() => {
  tlsSessions.clear();
  pool = new IdleConnections();
});
afterEach(async () => {
  pool.close();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

interface Endpoint {
  readonly url: string;
  readonly server: https.Server;
  /** TCP connections accepted. */
  connections: number;
  /** `Connection` request header of each request. */
  readonly connectionHeaders: (string | undefined)[];
  /** Answer the next requests like this instead of 200 + bundle. */
  mode: 'ok' | 'close' | 'error' | 'drop-second';
}

async function serve(cert: IssuedCert): Promise<Endpoint> {
  const body = marshalBundle(peerBundle);
  const perSocket = new WeakMap<object, number>();
  const ep: Endpoint = {
    url: '',
    server: undefined as unknown as https.Server,
    connections: 0,
    connectionHeaders: [],
    mode: 'ok',
  };
  const server = https.createServer(
    { cert: cert.pem, key: cert.privateKeyPem!, minVersion: 'TLSv1.2' },
    (req, res) => {
      ep.connectionHeaders.push(req.headers.connection);
      const n = (perSocket.get(req.socket) ?? 0) + 1;
      perSocket.set(req.socket, n);
      if (ep.mode === 'drop-second' && n >= 2) {
        // As a server closing an idle connection just as the request arrives: nothing answered.
        req.socket.destroy();
        return;
      }
      if (ep.mode === 'error') {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('broken');
        return;
      }
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (ep.mode === 'close') headers.connection = 'close';
      res.writeHead(200, headers).end(body);
    },
  );
  server.keepAliveTimeout = 60_000;
  server.on('connection', () => ep.connections++);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  Object.assign(ep, { url: `https://localhost:${(server.address() as AddressInfo).port}/`, server });
  return ep;
}

const connect = (o: tls.ConnectionOptions) => tls.connect({ ...o, host: '127.0.0.1' });

const fetchWith = (url: string, profile: FetchProfile, extra: { clock?: Clock } = {}) =>
  fetchPeerBundle(
    { trustDomain: td('peer.test'), urls: [new URL(url)], profile },
    { connect, connections: pool, ...extra },
  );
const web = (url: string, caPem: string) => fetchWith(url, { kind: 'https_web', caPem });
const spiffe = (url: string, bundles: TrustBundle, clock?: Clock) =>
  fetchWith(
    url,
    { kind: 'https_spiffe', endpointSpiffeId: id('spiffe://peer.test/spire/server'), bundles },
    clock ? { clock } : {},
  );

async function failure(p: Promise<unknown>): Promise<FetchError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FetchError);
  return err as FetchError;
}

/** Waits until the pool has taken back the connection of the last response. */
async function settled(size: number): Promise<void> {
  for (let i = 0; i < 100 && pool.size !== size; i++) await new Promise((r) => setImmediate(r));
  expect(pool.size).toBe(size);
}

describe('kept-alive bundle endpoint connections', () => {
  it('https_web: three polls, one TLS connection; without a pool each poll has its own', async () => {
    const ep = await serve(webCert);
    for (let i = 0; i < 3; i++) {
      expect((await web(ep.url, webCa.pem)).kind).toBe('bundle');
      await settled(1);
    }
    expect(ep.connections).toBe(1);
    expect(pool.reused).toBe(2);
    expect(ep.connectionHeaders).toEqual(['keep-alive', 'keep-alive', 'keep-alive']);

    const alone = () =>
      fetchPeerBundle(
        {
          trustDomain: td('peer.test'),
          urls: [new URL(ep.url)],
          profile: { kind: 'https_web', caPem: webCa.pem },
        },
        { connect },
      );
    await alone();
    await alone();
    expect(ep.connections).toBe(3);
    expect(ep.connectionHeaders.slice(3)).toEqual(['close', 'close']);
  });

  it('caps the records it sends once connected, so a kept connection holds a small write buffer', async () => {
    const ep = await serve(webCert);
    // What the socket was asked, in order: the handshake runs at OpenSSL's default record size.
    const calls: string[] = [];
    const spying = (o: tls.ConnectionOptions): tls.TLSSocket => {
      const s = connect(o);
      s.once('secureConnect', () => calls.push('secureConnect'));
      const set = s.setMaxSendFragment.bind(s);
      s.setMaxSendFragment = (size: number) => {
        calls.push(`setMaxSendFragment(${size}) ${s.encrypted && s.authorized ? 'verified' : 'unverified'}`);
        return set(size);
      };
      return s;
    };
    const fetched = await fetchPeerBundle(
      {
        trustDomain: td('peer.test'),
        urls: [new URL(ep.url)],
        profile: { kind: 'https_web', caPem: webCa.pem },
      },
      { connect: spying, connections: pool },
    );
    expect(fetched.kind).toBe('bundle');
    expect(REQUEST_SEND_FRAGMENT).toBe(1024);
    expect(calls).toEqual(['secureConnect', 'setMaxSendFragment(1024) verified']);
    // A reuse asks nothing again; the request still goes out and is answered.
    await settled(1);
    expect((await web(ep.url, webCa.pem)).kind).toBe('bundle');
    expect(calls).toHaveLength(2);
    expect(ep.connections).toBe(1);
  });

  it('an idle connection keeps nothing of its last exchange alive', async () => {
    const ep = await serve(webCert);
    const key = connectionKey(new URL(ep.url), { kind: 'https_web', caPem: webCa.pem });
    for (let i = 0; i < 2; i++) {
      expect((await web(ep.url, webCa.pem)).kind).toBe('bundle');
      await settled(1);
      const conn = pool.take(key)!;
      // node:http's last ClientRequest (and through it the response, its headers and the
      // exchange's closures) would stay reachable from the idle socket.
      expect((conn.socket as unknown as { _httpMessage: unknown })._httpMessage).toBeNull();
      pool.put(key, conn);
    }
    expect(ep.connections).toBe(1);
  });

  it('does not add listeners to a connection with every reuse', async () => {
    const ep = await serve(webCert);
    const key = connectionKey(new URL(ep.url), { kind: 'https_web', caPem: webCa.pem });
    const counts: string[] = [];
    for (let i = 0; i < 6; i++) {
      await web(ep.url, webCa.pem);
      await settled(1);
      const conn = pool.take(key)!;
      const s = conn.socket;
      counts.push(['error', 'close', 'end', 'data', 'timeout'].map((e) => s.listenerCount(e)).join('/'));
      pool.put(key, conn);
    }
    expect(ep.connections).toBe(1);
    expect(new Set(counts.slice(1)).size).toBe(1);
  });

  it('https_web: a connection verified under one CA set is never reused under another', async () => {
    const ep = await serve(webCert);
    await web(ep.url, webCa.pem);
    await settled(1);
    // The operator's CA file now holds another CA, which did not issue the server's certificate.
    const err = await failure(web(ep.url, otherCa.pem));
    expect(err.code).toBe('ERR_FETCH_TLS');
    expect(ep.connections).toBe(2);
    // The connection verified under the old CA set stays idle, unused, under its own key.
    expect(pool.size).toBe(1);
    expect(pool.reused).toBe(0);
  });

  it('https_spiffe: reused while the chain it presented still verifies against the held bundle', async () => {
    const ep = await serve(svidA);
    expect((await spiffe(ep.url, peerBundle)).kind).toBe('bundle');
    await settled(1);
    expect((await spiffe(ep.url, peerBundle)).kind).toBe('bundle');
    expect(ep.connections).toBe(1);
    expect(pool.reused).toBe(1);
  });

  it('https_spiffe: a rotated bundle that no longer vouches for the connection sends the poll to a new one', async () => {
    const ep = await serve(svidA);
    await spiffe(ep.url, peerBundle);
    await settled(1);
    // The peer moved to a new CA: its server now presents an SVID of the new CA to new
    // connections, and the broker holds the rotated bundle (old CA gone).
    ep.server.setSecureContext({ cert: svidNewCa.pem, key: svidNewCa.privateKeyPem! });
    expect((await spiffe(ep.url, rotatedBundle)).kind).toBe('bundle');
    expect(ep.connections).toBe(2);
    expect(pool.reused).toBe(1); // taken, checked, refused, closed
  });

  it('https_spiffe: an endpoint whose SVID changed to another SPIFFE ID is refused on its next connection', async () => {
    const ep = await serve(svidA);
    await spiffe(ep.url, peerBundle);
    await settled(1);
    ep.server.setSecureContext({ cert: svidB.pem, key: svidB.privateKeyPem! });
    ep.server.closeIdleConnections(); // as a server does when it reloads its certificate
    const err = await failure(spiffe(ep.url, peerBundle));
    expect(err.code).toBe('ERR_FETCH_ENDPOINT_ID');
    expect(ep.connections).toBe(2);
    expect(pool.size).toBe(0);
  });

  it('https_spiffe: a kept chain past its notAfter is not reused', async () => {
    const ep = await serve(svidA);
    await spiffe(ep.url, peerBundle);
    await settled(1);
    // An hour past the SVID's notAfter: the kept chain fails the check, so a new connection is
    // dialled — whose (same, expired) SVID then fails verification.
    const clock: Clock = {
      now: () => new Date(svidA.certificate.validTo).getTime() + 3_600_000,
      sleep: systemClock.sleep,
    };
    const err = await failure(spiffe(ep.url, peerBundle, clock));
    expect(err.code).toBe('ERR_FETCH_TLS');
    expect(ep.connections).toBe(2);
  });

  it('a connection the server closed while idle is dropped; one closed as the request arrives is retried once on a new one', async () => {
    const ep = await serve(webCert);
    await web(ep.url, webCa.pem);
    await settled(1);
    ep.server.closeIdleConnections();
    await settled(0);
    expect((await web(ep.url, webCa.pem)).kind).toBe('bundle');
    expect(ep.connections).toBe(2);

    await settled(1);
    ep.mode = 'drop-second';
    expect((await web(ep.url, webCa.pem)).kind).toBe('bundle');
    expect(ep.connections).toBe(3);
  });

  it('keeps nothing after Connection: close, an error status, or with maxIdle 0', async () => {
    const ep = await serve(webCert);
    ep.mode = 'close';
    await web(ep.url, webCa.pem);
    await settled(0);
    ep.mode = 'error';
    expect((await failure(web(ep.url, webCa.pem))).code).toBe('ERR_FETCH_STATUS');
    await settled(0);
    ep.mode = 'ok';
    pool = new IdleConnections({ maxIdle: 0 });
    await web(ep.url, webCa.pem);
    await web(ep.url, webCa.pem);
    expect(pool.size).toBe(0);
    expect(ep.connections).toBe(4);
    expect(ep.connectionHeaders.at(-1)).toBe('close');
  });

  it('holds at most maxIdle connections, closing the least recently used', async () => {
    pool = new IdleConnections({ maxIdle: 1 });
    const a = await serve(webCert);
    const b = await serve(webCert);
    await web(a.url, webCa.pem);
    await settled(1);
    await web(b.url, webCa.pem);
    await settled(1);
    await web(a.url, webCa.pem); // a's connection was closed to make room for b's
    expect(a.connections).toBe(2);
    await web(a.url, webCa.pem);
    expect(a.connections).toBe(2);
  });

  it('closes a connection idle longer than idleTimeoutMs instead of reusing it', async () => {
    let now = 1_000_000;
    pool = new IdleConnections({ idleTimeoutMs: 60_000, clock: { now: () => now } });
    const ep = await serve(webCert);
    const key = connectionKey(new URL(ep.url), { kind: 'https_web', caPem: webCa.pem });
    await web(ep.url, webCa.pem);
    await settled(1);
    now += 59_000;
    await web(ep.url, webCa.pem); // within the timeout: reused
    await settled(1);
    expect(ep.connections).toBe(1);
    now += 60_001;
    const conn = pool.take(key);
    expect(conn).toBeUndefined();
    expect(pool.size).toBe(0);
    await web(ep.url, webCa.pem);
    expect(ep.connections).toBe(2);
  });
});
