import { once } from 'node:events';
import { createServer as createHttpsServer, get as httpsGet } from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  createServer as createTlsServer,
  type Server,
  type TLSSocket,
  connect as tlsConnect,
} from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { peerChain, SvidHolder, tlsOptions, type X509SvidMaterial } from '../../../src/adapters/tls/index.js';
import { BundleSet } from '../../../src/core/bundle/source.js';
import { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { matchId, matchMemberOf } from '../../../src/core/spiffeid/index.js';
import { MtlsError, VerifyError } from '../../../src/errors.js';
import { makePki, T0, type TestPki } from '../../support/fixtures.js';

let a: TestPki;
let b: TestPki;
let aSvid: X509SvidMaterial;
let bSvid: X509SvidMaterial;
const now = () => T0;

async function material(pki: TestPki, path: string): Promise<X509SvidMaterial> {
  const leaf = await pki.svid(path);
  return { certChainPem: leaf.pem + pki.intermediate.pem, privateKeyPem: leaf.privateKeyPem! };
}

beforeAll(async () => {
  [a, b] = await Promise.all([makePki('a.test'), makePki('b.test')]);
  [aSvid, bSvid] = await Promise.all([material(a, '/client'), material(b, '/server')]);
});

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.close();
  }
});

/** A TLS server in b.test that answers every verified client with its SPIFFE ID and closes. */
async function startServer(opts: {
  source: BundleSet;
  svid: SvidHolder | X509SvidMaterial;
  authorize?: ReturnType<typeof matchMemberOf>;
  refused?: VerifyError[];
}): Promise<{ port: number; server: Server }> {
  const mtls = tlsOptions({
    source: opts.source,
    authorize: opts.authorize ?? matchMemberOf(a.td),
    svid: opts.svid,
    now,
  });
  const server = createTlsServer(mtls.serverOptions(), (socket) => {
    socket.end(`hello ${mtls.peerId(socket)?.toString()}`);
  });
  mtls.secure(server, (err) => opts.refused?.push(err));
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, server };
}

async function readAll(socket: TLSSocket): Promise<string> {
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    text += d;
  });
  await new Promise<void>((resolve) => {
    socket.on('close', () => resolve());
    socket.on('error', () => undefined);
  });
  return text;
}

describe('tlsOptions: mTLS across trust domains', () => {
  it('verifies both sides with the bundle of each peer’s own trust domain', async () => {
    const { port } = await startServer({ source: new BundleSet([a.bundle]), svid: bSvid });
    const client = tlsOptions({
      source: new BundleSet([b.bundle]),
      authorize: matchId(b.id('/server')),
      svid: aSvid,
      now,
    });
    const socket = await client.connect({ host: '127.0.0.1', port });
    expect(client.peerId(socket)?.toString()).toBe('spiffe://b.test/server');
    expect(peerChain(socket)).toHaveLength(2);
    expect(await readAll(socket)).toBe('hello spiffe://a.test/client');
  });

  it('works with https through the verifying agent', async () => {
    const serverTls = tlsOptions({
      source: new BundleSet([a.bundle]),
      authorize: matchMemberOf(a.td),
      svid: bSvid,
      now,
    });
    const server = createHttpsServer(serverTls.serverOptions(), (req, res) => {
      res.end(JSON.stringify({ peer: serverTls.peerId(req.socket as TLSSocket)?.toString() }));
    });
    serverTls.secure(server);
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const client = tlsOptions({
      source: new BundleSet([b.bundle]),
      authorize: matchMemberOf(b.td),
      svid: aSvid,
      now,
    });
    const agent = client.agent();
    const body = await new Promise<string>((resolve, reject) => {
      httpsGet({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () => resolve(text));
      }).on('error', reject);
    });
    agent.destroy();
    expect(JSON.parse(body)).toEqual({ peer: 'spiffe://a.test/client' });
  });

  it('a client refuses a server whose ID the matcher does not accept, before writing anything', async () => {
    const { port } = await startServer({ source: new BundleSet([a.bundle]), svid: bSvid });
    const client = tlsOptions({
      source: new BundleSet([b.bundle]),
      authorize: matchId(b.id('/other')),
      svid: aSvid,
      now,
    });
    const err = await client.connect({ host: '127.0.0.1', port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VerifyError);
    expect((err as VerifyError).code).toBe('ERR_VERIFY_ID_NOT_AUTHORIZED');
  });

  it('a server drops a client whose ID the matcher does not accept, before reading a request', async () => {
    const refused: VerifyError[] = [];
    const { port } = await startServer({
      source: new BundleSet([a.bundle]),
      svid: bSvid,
      authorize: matchId(a.id('/someone-else')),
      refused,
    });
    const client = tlsOptions({
      source: new BundleSet([b.bundle]),
      authorize: matchMemberOf(b.td),
      svid: aSvid,
      now,
    });
    const socket = await client.connect({ host: '127.0.0.1', port });
    socket.write('GET / HTTP/1.1\r\n\r\n');
    expect(await readAll(socket)).toBe('');
    expect(refused.map((e) => e.code)).toEqual(['ERR_VERIFY_ID_NOT_AUTHORIZED']);
  });

  it('refuses a peer from a trust domain whose bundle the source does not hold', async () => {
    const refused: VerifyError[] = [];
    const { port } = await startServer({ source: new BundleSet([]), svid: bSvid, refused });
    const client = tlsOptions({
      source: new BundleSet([b.bundle]),
      authorize: matchMemberOf(b.td),
      svid: aSvid,
      now,
    });
    const socket = await client.connect({ host: '127.0.0.1', port });
    expect(await readAll(socket)).toBe('');
    expect(refused.map((e) => e.code)).toEqual(['ERR_VERIFY_NO_BUNDLE']);
    // Another domain's bundle never vouches: b's bundle held for a's client does not help.
    const client2 = tlsOptions({
      source: new BundleSet([a.bundle]),
      authorize: matchMemberOf(b.td),
      svid: aSvid,
      now,
    });
    const err = await client2.connect({ host: '127.0.0.1', port }).catch((e: unknown) => e);
    expect((err as VerifyError).code).toBe('ERR_VERIFY_NO_BUNDLE');
  });

  it('refuses a client that presents no certificate', async () => {
    const refused: VerifyError[] = [];
    const { port } = await startServer({ source: new BundleSet([a.bundle]), svid: bSvid, refused });
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    await once(socket, 'secureConnect');
    expect(await readAll(socket)).toBe('');
    expect(refused.map((e) => e.code)).toEqual(['ERR_VERIFY_INPUT']);
  });

  it('follows a bundle rotation and an SVID rotation without a restart', async () => {
    const serverSource = new BundleSet([a.bundle]);
    const serverSvid = new SvidHolder(bSvid);
    const refused: VerifyError[] = [];
    const { port } = await startServer({ source: serverSource, svid: serverSvid, refused });
    const clientSource = new BundleSet([b.bundle]);
    const clientSvid = new SvidHolder(aSvid);
    const client = tlsOptions({
      source: clientSource,
      authorize: matchMemberOf(b.td),
      svid: clientSvid,
      now,
    });

    // a.test rotates to a new CA: its clients get SVIDs from it before the server trusts it.
    const a2 = await makePki('a.test', { sequence: 2n });
    clientSvid.update(await material(a2, '/client'));
    const early = await client.connect({ host: '127.0.0.1', port });
    expect(await readAll(early)).toBe('');
    expect(refused.map((e) => e.code)).toEqual(['ERR_VERIFY_X509_UNTRUSTED']);

    // The new bundle arrives (old and new CA side by side): the same server accepts at once.
    const rotated = TrustBundle.create({
      trustDomain: a.td,
      x509Authorities: [a.root.der, a2.root.der],
      sequence: 3n,
    });
    serverSource.set(rotated);
    const ok = await client.connect({ host: '127.0.0.1', port });
    expect(await readAll(ok)).toBe('hello spiffe://a.test/client');

    // b.test rotates its server SVID to a new CA; the client follows once it holds the new bundle.
    const b2 = await makePki('b.test', { sequence: 2n });
    serverSvid.update(await material(b2, '/server'));
    const err = await client.connect({ host: '127.0.0.1', port }).catch((e: unknown) => e);
    expect((err as VerifyError).code).toBe('ERR_VERIFY_X509_UNTRUSTED');
    clientSource.set(b2.bundle);
    const after = await client.connect({ host: '127.0.0.1', port });
    expect(client.peerId(after)?.toString()).toBe('spiffe://b.test/server');
    expect(await readAll(after)).toBe('hello spiffe://a.test/client');
  });

  it('reports connection failures with coded errors', async () => {
    const { port, server } = await startServer({ source: new BundleSet([a.bundle]), svid: bSvid });
    server.close();
    await once(server, 'close');
    const client = tlsOptions({
      source: new BundleSet([b.bundle]),
      authorize: matchMemberOf(b.td),
      svid: aSvid,
      now,
    });
    const err = await client.connect({ host: '127.0.0.1', port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MtlsError);
    expect((err as MtlsError).code).toBe('ERR_MTLS_CONNECT');
  });
});

describe('SvidHolder', () => {
  it('checks material and keeps the old SVID when a new one is refused', async () => {
    const holder = new SvidHolder(aSvid);
    expect(holder.id.toString()).toBe('spiffe://a.test/client');
    const seen: string[] = [];
    holder.subscribe((m) => seen.push(m.certChainPem));
    expect(() =>
      holder.update({ certChainPem: aSvid.certChainPem, privateKeyPem: bSvid.privateKeyPem }),
    ).toThrow(expect.objectContaining({ code: 'ERR_MTLS_SVID' }));
    expect(() => holder.update({ certChainPem: 'nope', privateKeyPem: aSvid.privateKeyPem })).toThrow(
      expect.objectContaining({ code: 'ERR_MTLS_SVID' }),
    );
    expect(() => new SvidHolder({ certChainPem: a.root.pem, privateKeyPem: 'x' })).toThrow(
      expect.objectContaining({ code: 'ERR_MTLS_SVID' }),
    );
    expect(holder.current()).toBe(aSvid);
    holder.update(bSvid);
    expect(holder.id.toString()).toBe('spiffe://b.test/server');
    expect(seen).toEqual([bSvid.certChainPem]);
  });

  it('refuses API misuse with TypeError', () => {
    expect(() =>
      tlsOptions({ source: {} as BundleSet, authorize: matchMemberOf(a.td), svid: aSvid }),
    ).toThrow(TypeError);
  });
});
