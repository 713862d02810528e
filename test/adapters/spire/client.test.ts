/**
 * SpireServerClient behaviour the contract suite does not cover: retries and backoff (injected
 * sleep, no waiting), deadlines, aborts, outages, malformed responses, TLS configuration errors.
 * Runs against the emulator over a real unix socket / loopback TCP.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createX509Svid } from '../../../src/adapters/pki/index.js';
import {
  type RetryInfo,
  SpireServerClient,
  type SpireServerClientOptions,
} from '../../../src/adapters/spire/client.js';
import { SpireEmulator } from '../../../src/adapters/spire/emulator/index.js';
import { loadSpireApi } from '../../../src/adapters/spire/proto.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { SpireError } from '../../../src/errors.js';
import { makeBundle, makeCa, NOT_AFTER, NOT_BEFORE } from './helpers.js';

const api = loadSpireApi();

async function caught(p: Promise<unknown>): Promise<SpireError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SpireError);
    return err as SpireError;
  }
  throw new Error('expected a SpireError');
}

/** Resolves waits only when told to: lets a test hold a server call open without real time. */
class Gate {
  readonly #waiting: (() => void)[] = [];
  wait = (): Promise<void> => new Promise((r) => this.#waiting.push(r));
  releaseAll(): void {
    for (const r of this.#waiting.splice(0)) r();
  }
  get waiting(): number {
    return this.#waiting.length;
  }
}

describe('SpireServerClient against the emulator', () => {
  const gate = new Gate();
  const emu = new SpireEmulator({ trustDomain: 'client.test', api, sleep: gate.wait });
  const clients: SpireServerClient[] = [];
  let address: string;

  const client = (opts: Partial<SpireServerClientOptions> = {}): SpireServerClient => {
    const c = new SpireServerClient({ address, api, ...opts });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    ({ address } = await emu.start());
  });

  afterEach(() => {
    gate.releaseAll();
    emu.faults.clear();
    emu.clearCalls();
    for (const c of clients.splice(0)) c.close();
  });

  afterAll(async () => {
    await emu.stop();
  });

  describe('retries', () => {
    it('retries UNAVAILABLE with capped exponential backoff and then succeeds', async () => {
      const sleeps: number[] = [];
      const retries: RetryInfo[] = [];
      const c = client({
        sleep: async (ms) => {
          sleeps.push(ms);
        },
        random: () => 1,
        onRetry: (i) => retries.push(i),
        retry: { maxAttempts: 5, initialDelayMs: 100, maxDelayMs: 250 },
      });
      emu.faults.failNext(3, { method: 'CountBundles' });
      expect(await c.countBundles()).toBe(1);
      expect(sleeps).toEqual([100, 200, 250]);
      expect(retries.map((r) => [r.method, r.attempt, r.status])).toEqual([
        ['CountBundles', 1, 'UNAVAILABLE'],
        ['CountBundles', 2, 'UNAVAILABLE'],
        ['CountBundles', 3, 'UNAVAILABLE'],
      ]);
      expect(emu.calls.filter((x) => x.method === 'CountBundles')).toHaveLength(4);
    });

    it('gives up after maxAttempts with ERR_SPIRE_UNAVAILABLE naming the attempts', async () => {
      const c = client({ sleep: async () => {}, retry: { maxAttempts: 3 } });
      emu.faults.failNext(5, { message: 'server on fire' });
      const err = await caught(c.getBundle());
      expect(err.code).toBe('ERR_SPIRE_UNAVAILABLE');
      expect(err.message).toMatch(/GetBundle .* failed: UNAVAILABLE: server on fire \(after 3 attempts\)$/);
      expect(emu.calls).toHaveLength(3);
    });

    it('does not retry other statuses', async () => {
      const c = client({ sleep: async () => {} });
      emu.faults.failNext(1, { code: 'INTERNAL', message: 'boom' });
      const err = await caught(c.countBundles());
      expect(err.code).toBe('ERR_SPIRE_INTERNAL');
      expect(emu.calls).toHaveLength(1);
      emu.faults.failNext(1, { code: 'RESOURCE_EXHAUSTED' });
      expect((await caught(c.countBundles())).code).toBe('ERR_SPIRE_RPC');
    });

    it('retries DEADLINE_EXCEEDED: a call held past its deadline, then a prompt one', async () => {
      const c = client({ sleep: async () => {}, timeoutMs: 100 });
      emu.faults.delayNext(1, 1, { method: 'GetBundle' }); // held by the gate until released
      const b = await c.getBundle();
      expect(b.trustDomain.name).toBe('client.test');
      expect(emu.calls.filter((x) => x.method === 'GetBundle')).toHaveLength(2);
    });

    it('maps an exhausted deadline to ERR_SPIRE_DEADLINE', async () => {
      const c = client({ sleep: async () => {}, timeoutMs: 50, retry: { maxAttempts: 2 } });
      emu.faults.delayNext(2, 1);
      const err = await caught(c.countBundles());
      expect(err.code).toBe('ERR_SPIRE_DEADLINE');
      expect(err.message).toContain('DEADLINE_EXCEEDED');
    });
  });

  describe('abort', () => {
    it('cancels an in-flight call when the signal aborts', async () => {
      const c = client();
      emu.faults.delayNext(1, 1);
      const ac = new AbortController();
      const p = c.countBundles({ signal: ac.signal });
      while (gate.waiting === 0) await new Promise((r) => setImmediate(r));
      ac.abort();
      const err = await caught(p);
      expect(err.code).toBe('ERR_SPIRE_ABORTED');
    });

    it('stops retrying when the signal aborts during backoff', async () => {
      const ac = new AbortController();
      const c = client({
        sleep: async () => {
          ac.abort();
        },
      });
      emu.faults.failNext(3);
      const err = await caught(c.countBundles({ signal: ac.signal }));
      expect(err.code).toBe('ERR_SPIRE_ABORTED');
      expect(emu.calls).toHaveLength(1);
    });

    it('does not call at all with an already aborted signal', async () => {
      const c = client();
      const err = await caught(c.countBundles({ signal: AbortSignal.abort() }));
      expect(err.code).toBe('ERR_SPIRE_ABORTED');
      expect(emu.calls).toHaveLength(0);
    });
  });

  describe('malformed responses', () => {
    it('refuses a batch answer with the wrong number of results', async () => {
      const c = client();
      emu.faults.respondNext(1, { results: [] }, { method: 'BatchSetFederatedBundle' });
      const err = await caught(c.batchSetFederatedBundle([await makeBundle('x.test')]));
      expect(err.code).toBe('ERR_SPIRE_RESPONSE');
      expect(err.message).toBe('SPIRE BatchSetFederatedBundle answered 0 results for 1 bundles');
    });

    it.each([
      ['the full list', 5, (c: SpireServerClient) => c.listFederatedBundles()],
      ['the sequence-only list', 2, (c: SpireServerClient) => c.listFederatedBundleSequences()],
    ] as const)(
      '%s refuses a pager that repeats its token instead of looping forever',
      async (_, n, list) => {
        const c = client();
        emu.faults.respondNext(n, { bundles: [], next_page_token: '7' }, { method: 'ListFederatedBundles' });
        const err = await caught(list(c));
        expect(err.code).toBe('ERR_SPIRE_RESPONSE');
        expect(err.message).toContain('page token "7" twice');
      },
    );

    it('surfaces an unconvertible bundle as ERR_SPIRE_CONVERSION', async () => {
      const c = client();
      emu.faults.respondNext(1, { trust_domain: 'client.test', refresh_hint: '-1' }, { method: 'GetBundle' });
      const err = await caught(c.getBundle());
      expect(err.code).toBe('ERR_SPIRE_CONVERSION');
      expect(err.message).toBe('bundle "client.test": refresh_hint: -1 is negative');
    });

    it('reports items without a status as UNKNOWN failures', async () => {
      const c = client();
      emu.faults.respondNext(1, { results: [{}] }, { method: 'BatchDeleteFederatedBundle' });
      const [r] = await c.batchDeleteFederatedBundle(['a.test']);
      expect(r).toMatchObject({ trustDomain: 'a.test', ok: false, status: { name: 'UNKNOWN' } });
      expect(r!.error?.code).toBe('ERR_SPIRE_RPC');
    });
  });

  describe('outages', () => {
    it('fails with ERR_SPIRE_UNAVAILABLE while down and works again after up()', async () => {
      const c = client({ retry: { maxAttempts: 2 }, sleep: async () => {} });
      expect(await c.countBundles()).toBe(1);
      await emu.down();
      expect((await caught(c.countBundles())).code).toBe('ERR_SPIRE_UNAVAILABLE');
      await emu.up();
      // grpc-js reconnects with its own backoff; real short sleeps between our retries.
      const again = client({ retry: { maxAttempts: 20, initialDelayMs: 50, maxDelayMs: 200 } });
      expect(await again.countBundles()).toBe(1);
    });
  });

  it('health follows the emulator', async () => {
    const c = client();
    expect(await c.healthCheck()).toBe('SERVING');
    emu.setServing('NOT_SERVING');
    expect(await c.healthCheck()).toBe('NOT_SERVING');
    emu.setServing(undefined);
  });

  it('refuses an invalid TTL as API misuse', async () => {
    const c = client();
    await expect(c.mintX509Svid(new Uint8Array([1]), -1)).rejects.toThrow(TypeError);
  });
});

describe('SpireServerClient configuration', () => {
  it('refuses bad addresses and mismatched transport options', () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return (err as SpireError).code;
      }
      return 'no error';
    };
    expect(code(() => new SpireServerClient({ address: 'tcp://x:1', api }))).toBe('ERR_SPIRE_ADDRESS');
    expect(code(() => new SpireServerClient({ address: 'dns:///127.0.0.1:8081', api }))).toBe(
      'ERR_SPIRE_ADDRESS',
    );
    expect(
      code(
        () =>
          new SpireServerClient({
            address: 'unix:///tmp/x.sock',
            api,
            tls: { certChainPem: '', privateKeyPem: '', trustBundlePem: '', serverTrustDomain: 'x' },
          }),
      ),
    ).toBe('ERR_SPIRE_ADDRESS');
    expect(() => new SpireServerClient({ address: 'unix:///tmp/x.sock', api, timeoutMs: 0 })).toThrow(
      TypeError,
    );
    expect(
      () => new SpireServerClient({ address: 'unix:///tmp/x.sock', api, retry: { maxAttempts: 0 } }),
    ).toThrow(TypeError);
  });

  describe('TLS material', () => {
    const emu = new SpireEmulator({
      trustDomain: 'tls.test',
      api,
      tcp: { adminIds: ['spiffe://tls.test/admin'] },
    });
    let tcpAddress: string;
    beforeAll(async () => {
      tcpAddress = (await emu.start()).tcpAddress!;
    });
    afterAll(async () => {
      await emu.stop();
    });

    const make = (tls: Parameters<typeof checkArgs>[0]) => checkArgs(tls);
    function checkArgs(tls: {
      certChainPem: string;
      privateKeyPem: string;
      trustBundlePem: string;
      serverTrustDomain: string;
    }) {
      return () => new SpireServerClient({ address: tcpAddress, api, tls });
    }

    it('validates the admin SVID, key and bundle up front (ERR_SPIRE_CREDENTIALS)', async () => {
      const admin = await emu.mintX509Svid('spiffe://tls.test/admin');
      const other = await emu.mintX509Svid('spiffe://tls.test/other');
      const base = {
        certChainPem: admin.certChainPem,
        privateKeyPem: admin.privateKeyPem,
        trustBundlePem: admin.bundlePem,
        serverTrustDomain: 'tls.test',
      };
      const expectCreds = (fn: () => unknown, message: RegExp) => {
        try {
          fn();
        } catch (err) {
          expect((err as SpireError).code).toBe('ERR_SPIRE_CREDENTIALS');
          expect((err as SpireError).message).toMatch(message);
          return;
        }
        throw new Error('expected ERR_SPIRE_CREDENTIALS');
      };
      expectCreds(make({ ...base, certChainPem: 'nope' }), /admin X509-SVID: no PEM CERTIFICATE block/);
      expectCreds(make({ ...base, privateKeyPem: 'nope' }), /private key does not parse/);
      expectCreds(make({ ...base, privateKeyPem: other.privateKeyPem }), /does not match the leaf/);
      const ca = await makeCa('tls.test');
      expectCreds(
        make({ ...base, certChainPem: ca.pem, privateKeyPem: ca.privateKeyPem! }),
        /leaf is a CA certificate/,
      );
      const noUri = await createX509Svid({
        id: SpiffeId.parse('spiffe://tls.test/x'),
        issuer: ca,
        notBefore: NOT_BEFORE,
        notAfter: NOT_AFTER,
        omitUri: true,
      });
      expectCreds(
        make({ ...base, certChainPem: noUri.pem, privateKeyPem: noUri.privateKeyPem! }),
        /exactly one SPIFFE ID URI SAN/,
      );
      expectCreds(
        make({ ...base, trustBundlePem: admin.certChainPem }),
        /trust bundle holds no CA certificate/,
      );
      expectCreds(make({ ...base, serverTrustDomain: 'Bad TD' }), /expected SPIRE server ID is not valid/);
      const ok = new SpireServerClient({ address: tcpAddress, api, tls: base });
      expect(await ok.countBundles()).toBe(1);
      ok.close();
    });

    it('fails the handshake against a server its bundle does not trust', async () => {
      const admin = await emu.mintX509Svid('spiffe://tls.test/admin');
      const stranger = await makeCa('tls.test');
      const c = new SpireServerClient({
        address: tcpAddress,
        api,
        retry: { maxAttempts: 1 },
        tls: {
          certChainPem: admin.certChainPem,
          privateKeyPem: admin.privateKeyPem,
          trustBundlePem: stranger.pem,
          serverTrustDomain: 'tls.test',
        },
      });
      const err = await caught(c.countBundles());
      expect(err.code).toBe('ERR_SPIRE_UNAVAILABLE');
      c.close();
    });

    it('is refused by the server with a client SVID from another CA', async () => {
      const admin = await emu.mintX509Svid('spiffe://tls.test/admin');
      const foreign = new SpireEmulator({ trustDomain: 'tls.test', api });
      await foreign.start();
      const forged = await foreign.mintX509Svid('spiffe://tls.test/admin');
      await foreign.stop();
      const c = new SpireServerClient({
        address: tcpAddress,
        api,
        retry: { maxAttempts: 1 },
        tls: {
          certChainPem: forged.certChainPem,
          privateKeyPem: forged.privateKeyPem,
          trustBundlePem: admin.bundlePem,
          serverTrustDomain: 'tls.test',
        },
      });
      expect((await caught(c.countBundles())).code).toBe('ERR_SPIRE_UNAVAILABLE');
      c.close();
    });
  });
});
