import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalBundle } from '../../../src/adapters/endpoint/local-bundle.js';
import { runBundleEndpoint, startBundleEndpoint } from '../../../src/adapters/endpoint/server.js';
import { MintedSvidCredentials } from '../../../src/adapters/endpoint/svid-credentials.js';
import {
  type CredentialRefusal,
  FileTlsCredentials,
} from '../../../src/adapters/endpoint/tls-credentials.js';
import { createX509Svid, type IssuedCert } from '../../../src/adapters/pki/index.js';
import { parseBundle } from '../../../src/core/bundle/codec.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { EndpointError } from '../../../src/errors.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import {
  CaMinter,
  FakeBundleGetter,
  LOCAL_TD,
  makeBundle,
  makeCa,
  NOT_AFTER,
  NOT_BEFORE,
} from './fixtures.js';

interface Got {
  status: number;
  body: Buffer;
  serial: string;
  protocol: string | null;
  localPort: number;
}

function get(
  url: string,
  opts: { ca: string; agent?: Agent; maxVersion?: 'TLSv1.1' | 'TLSv1.2' },
): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        ca: opts.ca,
        ...(opts.agent ? { agent: opts.agent } : { agent: false }),
        ...(opts.maxVersion ? { maxVersion: opts.maxVersion, minVersion: 'TLSv1' } : {}),
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        const serial = socket.getPeerCertificate().serialNumber;
        const protocol = socket.getProtocol();
        const localPort = socket.localPort ?? 0;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), serial, protocol, localPort });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Now, rounded down to a whole second: CaMinter's SVIDs start on a second boundary, so renewal
 * and retry deadlines land on exact fake-clock instants. */
function wholeSecondNow(): number {
  return Math.floor(Date.now() / 1000) * 1000;
}

/** Polls `cond` (real async work such as key generation runs outside the fake clock). */
async function eventually(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

async function webCert(ca: IssuedCert): Promise<IssuedCert> {
  return createX509Svid({
    id: SpiffeId.parse('spiffe://local.test/web'),
    issuer: ca,
    notBefore: NOT_BEFORE,
    notAfter: NOT_AFTER,
    dnsNames: ['localhost'],
  });
}

let dir: string;
let stop: AbortController;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sb-endpoint-'));
  stop = new AbortController();
});
afterEach(async () => {
  stop.abort();
  await rm(dir, { recursive: true, force: true });
});

async function localBundle() {
  const source = new FakeBundleGetter(await makeBundle({ sequence: 4n }));
  const local = new LocalBundle({ source, trustDomain: LOCAL_TD });
  await local.refresh();
  return { source, local };
}

describe('https_web: certificate and key from files', () => {
  it('serves the bundle over TLS ≥ 1.2 without client authentication, and hot-reloads the pair', async () => {
    const clock = new FakeClock(wholeSecondNow());
    const ca = await makeCa();
    const first = await webCert(ca);
    const certFile = join(dir, 'tls.crt');
    const keyFile = join(dir, 'tls.key');
    await writeFile(certFile, first.pem);
    await writeFile(keyFile, first.privateKeyPem!);
    const refusals: CredentialRefusal[] = [];
    const credentials = new FileTlsCredentials({
      certFile,
      keyFile,
      pollIntervalMs: 5000,
      onRefused: (r) => refusals.push(r),
      deps: { clock },
    });
    const { local } = await localBundle();
    const ep = await startBundleEndpoint({ host: '127.0.0.1', port: 0, local, credentials }, stop.signal);
    expect(ep.port).toBeGreaterThan(0);
    const url = `https://localhost:${ep.port}/`;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const r1 = await get(url, { ca: ca.pem, agent });
    expect(r1.status).toBe(200);
    expect(parseBundle(LOCAL_TD, r1.body).bundle.sequence).toBe(4n);
    expect(r1.serial.toLowerCase()).toBe(first.certificate.serialNumber.toLowerCase());
    expect(['TLSv1.2', 'TLSv1.3']).toContain(r1.protocol);
    await expect(get(url, { ca: ca.pem, maxVersion: 'TLSv1.1' })).rejects.toThrow();

    // A bad pair (key of another certificate) is refused; the old one stays.
    const other = await webCert(ca);
    await writeFile(certFile, other.pem);
    await clock.advance(5000);
    await credentials.reload(); // make sure the poll has run even if the file write raced it
    expect(refusals.at(-1)?.error).toBeInstanceOf(EndpointError);
    expect(refusals.at(-1)?.error).toMatchObject({ code: 'ERR_ENDPOINT_TLS_CREDENTIALS' });
    expect((await get(url, { ca: ca.pem })).serial.toLowerCase()).toBe(
      first.certificate.serialNumber.toLowerCase(),
    );

    // The matching key arrives: a later poll (driven by the fake clock; the file reads themselves
    // are real I/O, hence the short real-time pauses) installs the pair for new handshakes.
    await writeFile(keyFile, other.privateKeyPem!);
    for (
      let i = 0;
      i < 200 && credentials.current()?.leaf.serialNumber !== other.certificate.serialNumber;
      i++
    ) {
      await clock.advance(5000);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(credentials.current()?.leaf.serialNumber).toBe(other.certificate.serialNumber);
    const fresh = await get(url, { ca: ca.pem });
    expect(fresh.serial.toLowerCase()).toBe(other.certificate.serialNumber.toLowerCase());

    // The keep-alive connection opened before the rotation is still served on the same socket.
    const r2 = await get(url, { ca: ca.pem, agent });
    expect(r2.status).toBe(200);
    expect(r2.localPort).toBe(r1.localPort);
    expect(r2.serial.toLowerCase()).toBe(first.certificate.serialNumber.toLowerCase());
    agent.destroy();

    stop.abort();
    await ep.closed;
    await expect(get(url, { ca: ca.pem })).rejects.toThrow();
  });

  it('refuses to start with an unreadable or mismatched pair (coded errors)', async () => {
    const ca = await makeCa();
    const a = await webCert(ca);
    const b = await webCert(ca);
    const { local } = await localBundle();
    const missing = new FileTlsCredentials({
      certFile: join(dir, 'nope.crt'),
      keyFile: join(dir, 'nope.key'),
    });
    await expect(
      startBundleEndpoint({ host: '127.0.0.1', port: 0, local, credentials: missing }, stop.signal),
    ).rejects.toMatchObject({ code: 'ERR_ENDPOINT_TLS_FILE' });
    await writeFile(join(dir, 'a.crt'), a.pem);
    await writeFile(join(dir, 'b.key'), b.privateKeyPem!);
    const mismatched = new FileTlsCredentials({ certFile: join(dir, 'a.crt'), keyFile: join(dir, 'b.key') });
    await expect(mismatched.ready()).rejects.toMatchObject({ code: 'ERR_ENDPOINT_TLS_CREDENTIALS' });
    await writeFile(join(dir, 'junk.crt'), 'not a certificate');
    const junk = new FileTlsCredentials({ certFile: join(dir, 'junk.crt'), keyFile: join(dir, 'b.key') });
    await expect(junk.ready()).rejects.toMatchObject({ code: 'ERR_ENDPOINT_TLS_CREDENTIALS' });
  });

  it('runBundleEndpoint reports the bound port and returns once aborted', async () => {
    const ca = await makeCa();
    const a = await webCert(ca);
    await writeFile(join(dir, 'a.crt'), a.pem);
    await writeFile(join(dir, 'a.key'), a.privateKeyPem!);
    const credentials = new FileTlsCredentials({ certFile: join(dir, 'a.crt'), keyFile: join(dir, 'a.key') });
    const { local } = await localBundle();
    const ac = new AbortController();
    let url = '';
    const running = runBundleEndpoint(
      {
        host: '127.0.0.1',
        port: 0,
        local,
        credentials,
        onListening: (ep) => {
          url = `https://localhost:${ep.port}/`;
          ac.abort();
        },
      },
      ac.signal,
    );
    await running;
    expect(url).toMatch(/^https:\/\/localhost:\d+\/$/);
    await expect(get(url, { ca: ca.pem })).rejects.toThrow();
  });

  it('reports a port in use as ERR_ENDPOINT_LISTEN', async () => {
    const ca = await makeCa();
    const a = await webCert(ca);
    await writeFile(join(dir, 'a.crt'), a.pem);
    await writeFile(join(dir, 'a.key'), a.privateKeyPem!);
    const credentials = new FileTlsCredentials({ certFile: join(dir, 'a.crt'), keyFile: join(dir, 'a.key') });
    const { local } = await localBundle();
    const ep = await startBundleEndpoint({ host: '127.0.0.1', port: 0, local, credentials }, stop.signal);
    await expect(
      startBundleEndpoint({ host: '127.0.0.1', port: ep.port, local, credentials }, stop.signal),
    ).rejects.toMatchObject({ code: 'ERR_ENDPOINT_LISTEN' });
  });
});

describe('https_spiffe: X509-SVID minted through SPIRE’s SVID API', () => {
  const endpointId = SpiffeId.parse('spiffe://local.test/spiffe-broker');

  it('presents an SVID for the endpoint ID and renews it at half its lifetime without dropping connections', async () => {
    const clock = new FakeClock(wholeSecondNow());
    const ca = await makeCa();
    const minter = new CaMinter(ca, clock, 3600);
    const credentials = new MintedSvidCredentials({ minter, spiffeId: endpointId, deps: { clock } });
    const { local } = await localBundle();
    const ep = await startBundleEndpoint({ host: '127.0.0.1', port: 0, local, credentials }, stop.signal);
    const url = `https://127.0.0.1:${ep.port}/`;
    const agent = new Agent({ keepAlive: true, maxSockets: 1, checkServerIdentity: () => undefined });
    const r1 = await get(url, { ca: ca.pem, agent });
    expect(r1.status).toBe(200);
    expect(minter.minted).toEqual([{ id: endpointId.toString(), notAfter: expect.any(Number) }]);
    const firstSerial = r1.serial;

    await clock.advance(1800 * 1000 - 2000);
    expect(minter.minted).toHaveLength(1);
    await clock.advance(2000);
    await eventually(
      () => credentials.current()?.leaf.serialNumber.toLowerCase() !== firstSerial.toLowerCase(),
      'the renewed SVID',
    );
    expect(minter.minted).toHaveLength(2);
    // The renewed SVID starts at the fake clock's time, ahead of the real one, so this handshake
    // skips chain validation: it only checks which certificate new connections get.
    const fresh = await get(url, {
      ca: ca.pem,
      agent: new Agent({ keepAlive: false, rejectUnauthorized: false }),
    });
    expect(fresh.serial.toLowerCase()).not.toBe(firstSerial.toLowerCase());
    const r2 = await get(url, { ca: ca.pem, agent });
    expect(r2.localPort).toBe(r1.localPort);
    expect(r2.serial).toBe(firstSerial);
    agent.destroy();
  });

  it('keeps the current SVID and retries with backoff when a renewal fails', async () => {
    const clock = new FakeClock(wholeSecondNow());
    const minter = new CaMinter(await makeCa(), clock, 600);
    const refusals: CredentialRefusal[] = [];
    const credentials = new MintedSvidCredentials({
      minter,
      spiffeId: endpointId,
      onRefused: (r) => refusals.push(r),
      deps: { clock },
    });
    const first = await credentials.ready();
    const running = credentials.run(stop.signal);
    minter.error = new Error('SPIRE unavailable');
    await clock.advance(300_000);
    await eventually(() => refusals.length === 1, 'the first refusal');
    expect(credentials.current()).toBe(first);
    await clock.advance(999);
    expect(refusals).toHaveLength(1);
    await clock.advance(1);
    await eventually(() => refusals.length === 2, 'the retry after 1 s');
    await clock.advance(2000);
    await eventually(() => refusals.length === 3, 'the retry after 2 s');
    minter.error = undefined;
    await clock.advance(4000);
    await eventually(() => credentials.current() !== first, 'the renewal after recovery');
    expect(refusals).toHaveLength(3);
    stop.abort();
    await running;
  });

  it('refuses an SVID for another ID (coded ERR_ENDPOINT_SVID)', async () => {
    const clock = new FakeClock(wholeSecondNow());
    const minter = new CaMinter(await makeCa(), clock);
    minter.overrideId = SpiffeId.parse('spiffe://local.test/someone-else');
    const credentials = new MintedSvidCredentials({ minter, spiffeId: endpointId, deps: { clock } });
    await expect(credentials.ready()).rejects.toMatchObject({ code: 'ERR_ENDPOINT_SVID' });
  });
});

describe('slow clients', () => {
  it('cuts off a client that trickles its request head (slowloris), keeps serving others', async () => {
    const clock = new FakeClock(wholeSecondNow());
    const ca = await makeCa();
    const cert = await webCert(ca);
    const certFile = join(dir, 'slow.crt');
    const keyFile = join(dir, 'slow.key');
    await writeFile(certFile, cert.pem);
    await writeFile(keyFile, cert.privateKeyPem!);
    const credentials = new FileTlsCredentials({ certFile, keyFile, deps: { clock } });
    const { local } = await localBundle();
    const ep = await startBundleEndpoint(
      { host: '127.0.0.1', port: 0, local, credentials, headersTimeoutMs: 400 },
      stop.signal,
    );
    const { connect } = await import('node:tls');
    const socket = connect({
      host: '127.0.0.1',
      port: ep.port,
      servername: 'localhost',
      ca: cert.pem,
      rejectUnauthorized: false,
    });
    await new Promise<void>((resolve, reject) =>
      socket.once('secureConnect', () => resolve()).once('error', reject),
    );
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n'); // never finishes its head
    let answer = '';
    socket.on('data', (d: Buffer) => {
      answer += d.toString();
    });
    const closed = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 5_000);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    expect(closed).toBe(true);
    expect(answer).toMatch(/^(HTTP\/1\.1 408|)/);
    // A normal client is served meanwhile.
    expect((await get(`https://localhost:${ep.port}/`, { ca: ca.pem })).status).toBe(200);
  });
});

describe('silent connections (issue 16 item 6)', () => {
  /** Opens `n` TCP connections from `localAddress` that never start TLS; resolves once all are open. */
  async function silent(port: number, localAddress: string, n: number): Promise<{ closed: Promise<void>[] }> {
    const { connect } = await import('node:net');
    const closed: Promise<void>[] = [];
    const opened: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const s = connect({ host: '127.0.0.1', port, localAddress });
      s.on('error', () => undefined);
      opened.push(new Promise<void>((r) => s.once('connect', () => r()).once('close', () => r())));
      closed.push(new Promise<void>((r) => s.once('close', () => r())));
      stop.signal.addEventListener('abort', () => s.destroy(), { once: true });
    }
    await Promise.all(opened);
    return { closed };
  }

  /** Settles true when every promise settled within `ms`, false otherwise. */
  function within(ms: number, all: Promise<unknown>[]): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      void Promise.all(all).then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  async function webEndpoint(over: Record<string, number>) {
    const clock = new FakeClock(wholeSecondNow());
    const ca = await makeCa();
    const cert = await webCert(ca);
    const certFile = join(dir, 'silent.crt');
    const keyFile = join(dir, 'silent.key');
    await writeFile(certFile, cert.pem);
    await writeFile(keyFile, cert.privateKeyPem!);
    const credentials = new FileTlsCredentials({ certFile, keyFile, deps: { clock } });
    const { local } = await localBundle();
    const ep = await startBundleEndpoint(
      { host: '127.0.0.1', port: 0, local, credentials, ...over },
      stop.signal,
    );
    return { ep, ca };
  }

  it('closes connections that never start TLS after the handshake timeout; a client then gets its bundle', async () => {
    // The whole connection cap (16) is held by silent connections from four other loopback addresses.
    const { ep, ca } = await webEndpoint({ maxConnections: 16, handshakeTimeoutMs: 300 });
    const flood = await Promise.all(
      ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'].map((a) => silent(ep.port, a, 4)),
    );
    // Node's default (120 s) would keep them all; the short handshake timeout frees every slot.
    expect(
      await within(
        5_000,
        flood.flatMap((f) => f.closed),
      ),
    ).toBe(true);
    const got = await get(`https://localhost:${ep.port}/`, { ca: ca.pem });
    expect(got.status).toBe(200);
    expect(parseBundle(LOCAL_TD, got.body).bundle.sequence).toBe(4n);
  });

  it('caps the connections of one source address; other addresses are still served', async () => {
    const { ep, ca } = await webEndpoint({ maxConnectionsPerAddress: 8, handshakeTimeoutMs: 60_000 });
    const flood = await silent(ep.port, '127.0.0.2', 40);
    // 32 of the 40 are closed at accept, long before any handshake timeout could act.
    let closedSoon = 0;
    for (const c of flood.closed) void c.then(() => closedSoon++);
    await eventually(() => closedSoon >= 32, '32 connections over the per-address cap to be closed');
    expect(closedSoon).toBe(32);
    // A legitimate client from another address is served while the 8 stay open.
    const got = await get(`https://localhost:${ep.port}/`, { ca: ca.pem });
    expect(got.status).toBe(200);
    expect(closedSoon).toBe(32);
  });

  it('gives the slot of a closed connection back to its source address', async () => {
    const { ep, ca } = await webEndpoint({ maxConnectionsPerAddress: 2, handshakeTimeoutMs: 60_000 });
    const { connect } = await import('node:net');
    const open = (): Promise<{ socket: import('node:net').Socket; closed: Promise<void> }> =>
      new Promise((resolve) => {
        const socket = connect({ host: '127.0.0.1', port: ep.port, localAddress: '127.0.0.3' });
        socket.on('error', () => undefined);
        const closed = new Promise<void>((r) => socket.once('close', () => r()));
        socket.once('connect', () => resolve({ socket, closed }));
        stop.signal.addEventListener('abort', () => socket.destroy(), { once: true });
      });
    const first = [await open(), await open()];
    const third = await open();
    await third.closed; // over the cap: closed at accept
    for (const c of first) c.socket.destroy();
    await Promise.all(first.map((c) => c.closed));
    // Both slots are free again: two requests from that address are served.
    const fetchFrom = (): Promise<number> =>
      new Promise((resolve, reject) => {
        request(
          `https://localhost:${ep.port}/`,
          { ca: ca.pem, agent: false, localAddress: '127.0.0.3' },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        )
          .on('error', reject)
          .end();
      });
    // The server may see the closes a moment after the client does.
    let status = 0;
    for (let attempt = 0; attempt < 50 && status !== 200; attempt++) {
      status = await fetchFrom().catch(() => 0);
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe(200);
    expect(await Promise.all([fetchFrom(), fetchFrom()])).toEqual([200, 200]);
  });

  it('refuses nonsense limits with TypeError', async () => {
    await expect(webEndpoint({ handshakeTimeoutMs: 0 })).rejects.toThrow(TypeError);
    await expect(webEndpoint({ maxConnectionsPerAddress: 1.5 })).rejects.toThrow(TypeError);
  });
});
