/**
 * Load: the broker (its own process, compiled JS) under autocannon (another process), 100
 * keep-alive connections.
 *
 * 1. The bundle endpoint (`GET /`, https_web) for BENCH_LOAD_SECONDS (default 60) while the source
 *    SPIRE server (emulator) rotates — a new JWT authority every 3 s — so the served document keeps
 *    changing under load. Goal: zero failed requests; RSS bounded (growth over the second half of
 *    the run < 10 MiB); every rotation was served during the run.
 * 2. The verify API, X509-SVID (`POST /v1/verify/x509`) then JWT-SVID (`POST /v1/verify/jwt`), a
 *    quarter of that time each, rotations continuing. Goal: every request verified (200), RSS
 *    bounded likewise.
 */

import { createSign, type KeyObject } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SpireEmulator } from '../src/adapters/spire/emulator/emulator.js';
import { jwtAuthority } from '../src/core/bundle/trust-bundle.js';
import { keyPairSync } from '../src/platform/keygen.js';
import type { BenchFigure } from './lib.js';
import { type AutocannonResult, autocannon } from './support/autocannon.js';
import { type BrokerProcess, rssSampler, startWebEndpointBroker } from './support/broker-process.js';
import { startEmulatorTarget, type TargetServer } from './support/targets.js';
import type { WebServerCert } from './support/web-cert.js';

const SECONDS = Number(process.env.BENCH_LOAD_SECONDS ?? 60);
const CONNECTIONS = 100;
const ROTATE_EVERY_MS = 3000;
const TD = 'load.test';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A JWT-SVID for `sub`, ES256, signed with `key` under `kid`. */
function jwtSvid(key: KeyObject, kid: string, sub: string, aud: string): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'ES256', kid, typ: 'JWT' })}.${b64({ sub, aud: [aud], iat: now, exp: now + 3600 })}`;
  const sig = createSign('sha256').update(input).sign({ key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${sig.toString('base64url')}`;
}

/** The `spiffe_sequence` the endpoint serves now. */
/**
 * One request for the served bundle: with `etag`, a change notification (`If-None-Match` and
 * `Prefer: wait=10`) that the endpoint holds until the bundle changes. Resolves with the ETag and
 * the sequence of a 200, or the old ETag and undefined on a 304.
 */
function servedSequence(
  url: string,
  ca: string,
  etag?: string,
): Promise<{ etag: string | undefined; sequence: string | undefined }> {
  return new Promise((resolve, reject) => {
    const headers = etag ? { 'if-none-match': etag, prefer: 'wait=10' } : {};
    const req = request(url, { ca, agent: false, timeout: 20_000, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
      });
      res.on('end', () =>
        res.statusCode === 200
          ? resolve({
              etag: res.headers.etag,
              sequence: /"spiffe_sequence":\s*(\d+)/.exec(body)?.[1] ?? '?',
            })
          : resolve({ etag, sequence: undefined }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Rotates the emulator's JWT authority every few seconds until stopped; counts rotations. */
function rotator(emulator: SpireEmulator): { stop(): Promise<number> } {
  let n = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await sleep(ROTATE_EVERY_MS);
      if (stopped) break;
      emulator.prepareJwtAuthority();
      n++;
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return n;
    },
  };
}

function failures(r: AutocannonResult): number {
  return r.non2xx + r.errors + r.timeouts;
}

/**
 * Runs `work` while sampling the broker's RSS; reports the peak, the RSS at each quarter of the
 * phase, and the growth over its second half (after the heap reached its working size).
 */
async function phase<T>(
  pid: number,
  seconds: number,
  work: () => Promise<T>,
): Promise<{ result: T; peak: number; growth: number; start: number; quarters: number[] }> {
  const rss = rssSampler(pid, 250);
  const start = rss.last();
  const quarters: number[] = [];
  const marks = [1, 2, 3].map((q) =>
    setTimeout(
      () => {
        quarters.push(rss.last());
      },
      (q * seconds * 1000) / 4,
    ),
  );
  try {
    const result = await work();
    quarters.push(rss.last());
    const half = quarters[1] ?? start;
    return { result, peak: rss.peak(), growth: rss.last() - half, start, quarters };
  } finally {
    for (const m of marks) clearTimeout(m);
    rss.stop();
  }
}

const MiB = 2 ** 20;
const mib = (n: number) => Math.round((n / MiB) * 10) / 10;

export async function run(): Promise<BenchFigure[]> {
  const dir = await mkdtemp(join(tmpdir(), 'sb-load-'));
  let target: TargetServer | undefined;
  let broker: BrokerProcess | undefined;
  try {
    target = await startEmulatorTarget('spire', TD, dir);
    const emulator = target.emulator!;
    // A JWT authority whose private key the benchmark holds, in the local bundle.
    const { publicKey, privateKey } = keyPairSync('ec', { namedCurve: 'P-256' });
    await emulator.appendAuthorities({ jwt: [jwtAuthority('bench-jwt', publicKey, 0)] });
    const svid = await emulator.mintX509Svid(`spiffe://${TD}/workload`, 24 * 3600);
    const token = jwtSvid(privateKey, 'bench-jwt', `spiffe://${TD}/workload`, `spiffe://${TD}/api`);

    let urls: { endpoint?: string; verify?: string };
    let web: WebServerCert;
    ({ broker, urls, web } = await startWebEndpointBroker(dir, {
      trustDomain: TD,
      spireAddress: target.address,
    }));
    const endpointUrl = urls.endpoint!;
    const verifyUrl = urls.verify!;

    // Warm-up (JIT, TLS) before anything is measured.
    await autocannon({ url: endpointUrl, connections: CONNECTIONS, seconds: 2 });

    // --- 1. bundle endpoint ---
    const rot1 = rotator(emulator);
    // A side client holding change notifications, as a federating broker would: it must see every
    // rotation while the load runs (the endpoint reads its SPIRE server every 250 ms while someone
    // waits; with nobody waiting it reads every 5 s, and a plain poller may skip versions).
    const sequences = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      let etag: string | undefined;
      while (sampling) {
        try {
          const r = await servedSequence(endpointUrl, web.caPem, etag);
          etag = r.etag;
          if (r.sequence !== undefined) sequences.add(r.sequence);
        } catch {
          sequences.add('error');
          await sleep(500);
        }
      }
    })();
    const ep = await phase(broker.pid, SECONDS, () =>
      autocannon({ url: endpointUrl, connections: CONNECTIONS, seconds: SECONDS }),
    );
    sampling = false;
    await sampler;
    const rotations1 = await rot1.stop();
    sequences.delete('error');

    // --- 2. verify API ---
    const verifySeconds = Math.max(5, Math.round(SECONDS / 6));
    const rot2 = rotator(emulator);
    const x509Load = (seconds: number) =>
      autocannon({
        url: `${verifyUrl}/v1/verify/x509`,
        connections: CONNECTIONS,
        seconds,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ chain: svid.certChainPem }),
      });
    const jwtLoad = (seconds: number) =>
      autocannon({
        url: `${verifyUrl}/v1/verify/jwt`,
        connections: CONNECTIONS,
        seconds,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token, audience: `spiffe://${TD}/api` }),
      });
    await x509Load(2); // warm-up
    await jwtLoad(2);
    const x509 = await phase(broker.pid, verifySeconds, () => x509Load(verifySeconds));
    const jwt = await phase(broker.pid, verifySeconds, () => jwtLoad(verifySeconds));
    const rotations2 = await rot2.stop();

    const epFail = failures(ep.result);
    const verifyFail = failures(x509.result) + failures(jwt.result);
    const verifyGrowth = Math.max(x509.growth, jwt.growth);
    return [
      {
        kind: 'figure',
        name: `bundle endpoint under load (${CONNECTIONS} conns, ${SECONDS} s, a rotation every ${ROTATE_EVERY_MS / 1000} s): failed requests`,
        value: epFail,
        unit: 'requests',
        goal: '= 0',
        met: epFail === 0 && sequences.size >= rotations1,
        note: `${ep.result['2xx']} answered 200 (${Math.round(ep.result.requests.average)} req/s, p99 ${ep.result.latency.p99} ms); ${rotations1} rotations, ${sequences.size} distinct bundle sequences seen by a side client holding change notifications during the run`,
      },
      {
        kind: 'figure',
        name: 'broker RSS growth under endpoint load (second half of the run)',
        value: mib(ep.growth),
        unit: 'MiB',
        goal: '< 10 MiB',
        met: ep.growth < 10 * MiB,
        note: `RSS ${mib(ep.start)} MiB before; at each quarter of the run ${ep.quarters.map(mib).join(' / ')} MiB; peak ${mib(ep.peak)} MiB`,
      },
      {
        kind: 'figure',
        name: `verify API under load (${CONNECTIONS} conns, X509-SVID then JWT-SVID, ${verifySeconds} s each, rotations continuing): requests not verified`,
        value: verifyFail,
        unit: 'requests',
        goal: '= 0',
        met: verifyFail === 0,
        note: `X509-SVID: ${x509.result['2xx']} verified (${Math.round(x509.result.requests.average)} req/s, p99 ${x509.result.latency.p99} ms); JWT-SVID: ${jwt.result['2xx']} verified (${Math.round(jwt.result.requests.average)} req/s, p99 ${jwt.result.latency.p99} ms); ${rotations2} rotations`,
      },
      {
        kind: 'figure',
        name: 'broker RSS growth under verify API load (second half of each run)',
        value: mib(verifyGrowth),
        unit: 'MiB',
        goal: '< 10 MiB',
        met: verifyGrowth < 10 * MiB,
        note: `X509-SVID run quarters ${x509.quarters.map(mib).join(' / ')} MiB, JWT-SVID run ${jwt.quarters.map(mib).join(' / ')} MiB; peak ${mib(Math.max(x509.peak, jwt.peak))} MiB`,
      },
    ];
  } finally {
    await broker?.stop();
    await target?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
