import type { ConnectionOptions } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { BrokerMetrics, createMetricsRegistry } from '../../../src/adapters/metrics/index.js';
import {
  KeyedRateLimiter,
  MtlsProbe,
  type MtlsProbeOptions,
  type ProbePeer,
  type ProbeResult,
  type ProbeVerdict,
  parseVerdict,
} from '../../../src/adapters/probe/index.js';
import { SvidHolder, type X509SvidMaterial } from '../../../src/adapters/tls/index.js';
import { BundleSet } from '../../../src/core/bundle/source.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { makePki, T0, type TestPki } from '../../support/fixtures.js';

let a: TestPki;
let b: TestPki;

async function material(pki: TestPki, path = '/spiffe-broker'): Promise<X509SvidMaterial> {
  const leaf = await pki.svid(path);
  return { certChainPem: leaf.pem + pki.intermediate.pem, privateKeyPem: leaf.privateKeyPem! };
}

beforeAll(async () => {
  [a, b] = await Promise.all([makePki('a.test'), makePki('b.test')]);
});

/** What each local SPIRE server of one broker holds, by trust domain name. */
type Spire = Record<string, Map<string, TrustBundle>>;

const probes: MtlsProbe[] = [];
afterEach(async () => {
  for (const p of probes.splice(0)) await p.close();
});

interface Broker {
  probe: MtlsProbe;
  svid: SvidHolder;
  spire: Spire;
  peers: ProbePeer[];
  clock: FakeClock;
  metrics: BrokerMetrics;
  /** Every SPIRE read, by trust domain name. */
  reads: string[];
}

async function broker(
  pki: TestPki,
  spire: Spire,
  opts: { fail?: boolean } & Pick<MtlsProbeOptions, 'heldBundles' | 'inboundSpireReads'> = {},
): Promise<Broker> {
  const reads: string[] = [];
  const svid = new SvidHolder(await material(pki));
  const peers: ProbePeer[] = [];
  const clock = new FakeClock(T0);
  const metrics = new BrokerMetrics({ registry: createMetricsRegistry(), clock });
  const probe = new MtlsProbe({
    trustDomain: pki.td,
    svid,
    clock,
    metrics,
    peers: () => peers,
    listen: { host: '127.0.0.1', port: 0 },
    intervalMs: 10_000,
    timeoutMs: 5_000,
    ...(opts.heldBundles ? { heldBundles: opts.heldBundles } : {}),
    ...(opts.inboundSpireReads ? { inboundSpireReads: opts.inboundSpireReads } : {}),
    bundlesAsSpireHolds: async (td) => {
      reads.push(td.name);
      if (opts.fail) throw new Error('SPIRE unavailable');
      return Object.entries(spire).map(([server, held]) => ({ server, bundle: held.get(td.name) }));
    },
  });
  probes.push(probe);
  await probe.listen();
  return { probe, svid, spire, peers, clock, metrics, reads };
}

function pointAt(from: Broker, to: Broker, pki: TestPki): void {
  const addr = to.probe.address()!;
  from.peers.push({
    trustDomain: pki.td,
    host: addr.host,
    port: addr.port,
    expectedId: pki.id('/spiffe-broker'),
  });
}

async function pair(): Promise<{ ba: Broker; bb: Broker }> {
  const ba = await broker(a, { main: new Map([['b.test', b.bundle]]) });
  const bb = await broker(b, { main: new Map([['a.test', a.bundle]]) });
  pointAt(ba, bb, b);
  pointAt(bb, ba, a);
  return { ba, bb };
}

async function success(m: BrokerMetrics, peer: string): Promise<number | undefined> {
  const g = await m.registry.getSingleMetric('spiffe_broker_mtls_probe_success')?.get();
  return g?.values.find((v) => v.labels.peer === peer)?.value;
}

describe('MtlsProbe', () => {
  it('succeeds when both SPIRE sides trust each other’s current SVIDs', async () => {
    const { ba, bb } = await pair();
    const [r] = await ba.probe.probeAll();
    expect(r).toMatchObject({
      peer: 'b.test',
      ok: true,
      outbound: { ok: true, id: 'spiffe://b.test/spiffe-broker' },
      inbound: { ok: true, id: 'spiffe://a.test/spiffe-broker' },
    });
    expect(await success(ba.metrics, 'b.test')).toBe(1);
    expect((await bb.probe.probeAll())[0]?.ok).toBe(true);
  });

  it('catches a rotation that was published but is not yet trusted, in both directions', async () => {
    const { ba, bb } = await pair();
    // b.test rotates to a new CA; a.test's SPIRE still holds b's old bundle.
    const b2 = await makePki('b.test', { sequence: 2n });
    bb.svid.update(await material(b2));

    const fromA = await ba.probe.probe(ba.peers[0]!);
    expect(fromA.ok).toBe(false);
    expect(fromA.outbound).toMatchObject({ ok: false, code: 'ERR_VERIFY_X509_UNTRUSTED' });
    expect(fromA.reason?.message).toMatch(/^we refused the peer: SPIRE server "main": /);
    expect(await success(ba.metrics, 'b.test')).toBe(0);

    const fromB = await bb.probe.probe(bb.peers[0]!);
    expect(fromB.outbound?.ok).toBe(true);
    expect(fromB.inbound).toMatchObject({ ok: false, code: 'ERR_VERIFY_X509_UNTRUSTED' });
    expect(fromB.reason).toMatchObject({ code: 'ERR_VERIFY_X509_UNTRUSTED' });
    expect(fromB.reason?.message).toMatch(/^the peer refused us: /);

    // The new bundle reaches a.test's SPIRE: trusted both ways again.
    ba.spire.main!.set('b.test', b2.bundle);
    expect((await ba.probe.probe(ba.peers[0]!)).ok).toBe(true);
    expect((await bb.probe.probe(bb.peers[0]!)).ok).toBe(true);
  });

  it('judges with every SPIRE server’s copy and names the one that lags', async () => {
    const { ba } = await pair();
    const old = await makePki('b.test');
    ba.spire.dr = new Map([['b.test', old.bundle]]);
    const r = await ba.probe.probe(ba.peers[0]!);
    expect(r.outbound).toMatchObject({ ok: false, code: 'ERR_VERIFY_X509_UNTRUSTED' });
    expect((r.outbound as { message: string }).message).toContain('SPIRE server "dr"');
    ba.spire.dr.delete('b.test');
    expect((await ba.probe.probe(ba.peers[0]!)).outbound).toMatchObject({ code: 'ERR_VERIFY_NO_BUNDLE' });
  });

  it('refuses a peer broker with another ID than expected', async () => {
    const { ba, bb } = await pair();
    bb.svid.update(await material(b, '/impostor'));
    const r = await ba.probe.probe(ba.peers[0]!);
    expect(r.outbound).toMatchObject({ ok: false, code: 'ERR_VERIFY_ID_NOT_AUTHORIZED' });
  });

  it('answers only clients of allowlisted trust domains', async () => {
    const { bb } = await pair();
    const c = await makePki('c.test');
    const bc = await broker(c, { main: new Map([['b.test', b.bundle]]) });
    pointAt(bc, bb, b);
    const r = await bc.probe.probe(bc.peers[0]!);
    expect(r.outbound?.ok).toBe(true);
    expect(r.inbound).toMatchObject({ ok: false, code: 'ERR_VERIFY_ID_NOT_AUTHORIZED' });
  });

  it('reports an unreachable peer and unreadable SPIRE bundles with coded reasons', async () => {
    const { ba, bb } = await pair();
    await bb.probe.close();
    const down = await ba.probe.probe(ba.peers[0]!);
    expect(down).toMatchObject({ ok: false, reason: { code: 'ERR_MTLS_CONNECT' } });
    expect(await success(ba.metrics, 'b.test')).toBe(0);
    const total = await ba.metrics.registry.getSingleMetric('spiffe_broker_mtls_probe_total')?.get();
    expect(total?.values).toContainEqual(
      expect.objectContaining({
        labels: { peer: 'b.test', result: 'failed', reason: 'ERR_MTLS_CONNECT' },
        value: 1,
      }),
    );

    const broken = await broker(a, {}, { fail: true });
    const { bb: other } = await pair();
    pointAt(broken, other, b);
    const r = await broken.probe.probe(broken.peers[0]!);
    expect(r.outbound).toMatchObject({ ok: false, code: 'ERR_MTLS_PROBE_BUNDLES' });
  });

  it('runs rounds on the injected clock until aborted, then closes its port', async () => {
    const { ba } = await pair();
    const results: ProbeResult[] = [];
    const probe = new MtlsProbe({
      trustDomain: a.td,
      svid: await material(a),
      clock: ba.clock,
      peers: () => ba.peers,
      intervalMs: 10_000,
      listen: { host: '127.0.0.1', port: 0 },
      bundlesAsSpireHolds: async (td) => [{ server: 'main', bundle: ba.spire.main!.get(td.name) }],
      onResult: (r) => results.push(r),
    });
    const stop = new AbortController();
    const running = probe.run(stop.signal);
    await vi.waitFor(() => expect(results.length === 1 && ba.clock.pending === 1).toBe(true));
    expect(probe.address()).toBeDefined();
    await ba.clock.advance(9_999);
    expect(results).toHaveLength(1);
    await ba.clock.advance(1);
    await vi.waitFor(() => expect(results).toHaveLength(2));
    expect(results.every((r) => r.ok)).toBe(true);
    stop.abort();
    await running;
    expect(probe.address()).toBeUndefined();
    expect(probe.results().map((r) => r.peer)).toEqual(['b.test']);
  });

  it('parses verdict lines strictly', () => {
    expect(parseVerdict('{"ok":true,"id":"spiffe://a.test/x"}')).toEqual({
      ok: true,
      id: 'spiffe://a.test/x',
    });
    expect(parseVerdict('{"ok":false,"code":"ERR_X","message":"m"}')).toEqual({
      ok: false,
      code: 'ERR_X',
      message: 'm',
    });
    expect(parseVerdict('{"ok":true}')).toBeUndefined();
    expect(parseVerdict('null')).toBeUndefined();
    expect(parseVerdict('HTTP/1.1 400')).toBeUndefined();
  });
});

/** Connects to a probe port as a client presenting `m` from `localAddress`; resolves with its verdict. */
async function ask(probe: MtlsProbe, m: X509SvidMaterial, localAddress = '127.0.0.1'): Promise<ProbeVerdict> {
  const { connect } = await import('node:tls');
  const addr = probe.address()!;
  return new Promise((resolve, reject) => {
    // localAddress reaches net.connect (the TLS options type does not list it).
    const options: ConnectionOptions & { localAddress: string } = {
      host: addr.host,
      port: addr.port,
      localAddress,
      key: m.privateKeyPem,
      cert: m.certChainPem,
      rejectUnauthorized: false,
    };
    const socket = connect(options);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      text += d;
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const v = parseVerdict(text.split('\n')[0] ?? '');
      if (v) resolve(v);
      else reject(new Error(`no verdict: ${JSON.stringify(text)}`));
    });
  });
}

describe('the probe port reads SPIRE only for authenticated clients (issue 16 item 10)', () => {
  it('a client claiming an allowlisted trust domain with a certificate of its own making triggers no SPIRE read', async () => {
    const forger = await makePki('b.test'); // same trust domain name, the attacker's own CA
    const ba = await broker(
      a,
      { main: new Map([['b.test', b.bundle]]) },
      { heldBundles: new BundleSet([b.bundle]) },
    );
    ba.peers.push({ trustDomain: b.td, host: '127.0.0.1', port: 1 });
    for (let i = 0; i < 3; i++) {
      const v = await ask(ba.probe, await material(forger));
      expect(v).toMatchObject({ ok: false, code: 'ERR_VERIFY_X509_UNTRUSTED' });
      expect((v as { message: string }).message).toMatch(/^not verified with the bundle this broker holds: /);
    }
    expect(ba.reads).toEqual([]);
    // The real peer broker is judged with SPIRE's copy, as before.
    expect(await ask(ba.probe, await material(b))).toEqual({ ok: true, id: 'spiffe://b.test/spiffe-broker' });
    expect(ba.reads).toEqual(['b.test']);
  });

  it('a client whose trust domain the broker holds no bundle for triggers no SPIRE read', async () => {
    const ba = await broker(a, { main: new Map([['b.test', b.bundle]]) }, { heldBundles: new BundleSet([]) });
    ba.peers.push({ trustDomain: b.td, host: '127.0.0.1', port: 1 });
    expect(await ask(ba.probe, await material(b))).toMatchObject({ ok: false, code: 'ERR_VERIFY_NO_BUNDLE' });
    expect(ba.reads).toEqual([]);
  });

  it('rate-limits SPIRE reads per source address, on the injected clock', async () => {
    const ba = await broker(
      a,
      { main: new Map([['b.test', b.bundle]]) },
      {
        heldBundles: new BundleSet([b.bundle]),
        inboundSpireReads: {
          perAddress: { burst: 2, perSecond: 0.1 },
          overall: { burst: 100, perSecond: 10 },
        },
      },
    );
    ba.peers.push({ trustDomain: b.td, host: '127.0.0.1', port: 1 });
    const peer = await material(b);
    expect((await ask(ba.probe, peer)).ok).toBe(true);
    expect((await ask(ba.probe, peer)).ok).toBe(true);
    expect(await ask(ba.probe, peer)).toMatchObject({ ok: false, code: 'ERR_MTLS_PROBE_RATE_LIMITED' });
    expect(ba.reads).toHaveLength(2);
    // Another source address has its own bucket.
    expect((await ask(ba.probe, peer, '127.0.0.2')).ok).toBe(true);
    // One token back after 10 s.
    await ba.clock.advance(10_000);
    expect((await ask(ba.probe, peer)).ok).toBe(true);
    expect(await ask(ba.probe, peer)).toMatchObject({ ok: false, code: 'ERR_MTLS_PROBE_RATE_LIMITED' });
    expect(ba.reads).toHaveLength(4);
  });
});

describe('KeyedRateLimiter', () => {
  it('spends from the key and the overall bucket together, refills over time, bounds its memory', () => {
    let now = 0;
    const l = new KeyedRateLimiter({
      perKey: { burst: 2, perSecond: 1 },
      overall: { burst: 3, perSecond: 1 },
      now: () => now,
    });
    expect([l.take('x'), l.take('x'), l.take('x')]).toEqual([true, true, false]);
    expect([l.take('y'), l.take('y')]).toEqual([true, false]); // the overall bucket is empty now
    now += 1000;
    expect([l.take('z'), l.take('z')]).toEqual([true, false]);
    now += 60_000;
    for (let i = 0; i < 5000; i++) {
      now += 1000;
      expect(l.take(`k${i}`), `k${i}`).toBe(true);
    }
    expect(
      () =>
        new KeyedRateLimiter({
          perKey: { burst: 0, perSecond: 1 },
          overall: { burst: 1, perSecond: 1 },
          now: () => 0,
        }),
    ).toThrow(TypeError);
  });
});
