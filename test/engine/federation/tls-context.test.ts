import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { sharedSecureContext, tlsConnectOptions } from '../../../src/engine/federation/tls.js';
import { id, makeCa, makeSvid } from './helpers.js';

describe('client TLS contexts are shared per CA set', () => {
  it('one context per CA PEM (and one for the default roots), reused by every connection', async () => {
    const a = (await makeCa('a.test')).pem;
    const b = (await makeCa('b.test')).pem;
    const url = new URL('https://127.0.0.1:8443/');
    const web = (caPem?: string) =>
      tlsConnectOptions(url, { kind: 'https_web', ...(caPem ? { caPem } : {}) });
    expect(web(a).secureContext).toBe(web(a).secureContext);
    expect(web(a).secureContext).not.toBe(web(b).secureContext);
    expect(web().secureContext).toBe(sharedSecureContext(undefined));
    expect(web(a).secureContext).not.toBe(web().secureContext);
    // https_spiffe verifies by hand after the handshake: no CA, the default-roots context.
    const spiffe = tlsConnectOptions(url, {
      kind: 'https_spiffe',
      endpointSpiffeId: id('spiffe://a.test/spire/server'),
      bundles: { getBundleForTrustDomain: () => undefined },
    });
    expect(spiffe.secureContext).toBe(sharedSecureContext(undefined));
    expect(spiffe.rejectUnauthorized).toBe(false);
    expect(web(a).rejectUnauthorized).toBe(true);
  });
});

describe('client TLS options', () => {
  it("offer ALPN http/1.1 without pinning a slab of the Buffer pool for the connection's life", async () => {
    const ca = await makeCa('web.test');
    const cert = await makeSvid(ca, 'spiffe://web.test/endpoint', { dnsNames: ['localhost'] });
    let negotiated: (value: string | false) => void = () => undefined;
    const serverSide = new Promise<string | false>((r) => {
      negotiated = r;
    });
    const server = tls.createServer(
      { cert: cert.pem, key: cert.privateKeyPem!, ALPNProtocols: ['h2', 'http/1.1'] },
      (s) => {
        negotiated(s.alpnProtocol ?? false);
        s.end();
      },
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const opts = tlsConnectOptions(new URL(`https://localhost:${port}/`), {
        kind: 'https_web',
        caPem: ca.pem,
      });
      const socket = tls.connect({ ...opts, host: '127.0.0.1' });
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', resolve);
        socket.once('error', reject);
      });
      expect(socket.alpnProtocol).toBe('http/1.1');
      // node:tls keeps the converted list with the socket (`_tlsOptions`). From an array it would
      // be a slice of the shared pool (8 KiB on Node 20, 64 KiB on Node 24), held while the
      // connection is kept; from the DataView it is 9 bytes of its own.
      const kept = (socket as unknown as { _tlsOptions: { ALPNProtocols: Buffer } })._tlsOptions
        .ALPNProtocols;
      expect([...kept]).toEqual([8, ...Buffer.from('http/1.1')]);
      expect(kept.buffer.byteLength).toBe(9);
      expect(await serverSide).toBe('http/1.1');
      socket.destroy();
    } finally {
      server.close();
    }
  });
});
