import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { TrustBundle } from '../../src/bundle/trust-bundle.js';
import { BrokerMetrics, createMetricsRegistry } from '../../src/metrics/index.js';
import { MtlsProbe, type ProbePeer, type ProbeResult, parseVerdict } from '../../src/probe/index.js';
import { SvidHolder, type X509SvidMaterial } from '../../src/tls/index.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { makePki, T0, type TestPki } from '../support/fixtures.js';

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
}

async function broker(pki: TestPki, spire: Spire, opts: { fail?: boolean } = {}): Promise<Broker> {
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
    bundlesAsSpireHolds: async (td) => {
      if (opts.fail) throw new Error('SPIRE unavailable');
      return Object.entries(spire).map(([server, held]) => ({ server, bundle: held.get(td.name) }));
    },
  });
  probes.push(probe);
  await probe.listen();
  return { probe, svid, spire, peers, clock, metrics };
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
