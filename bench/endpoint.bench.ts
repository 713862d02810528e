/**
 * Bundle endpoint throughput: `GET /` over HTTPS with keep-alive, 50 connections, driven by
 * autocannon in a child process, against (a) the broker's endpoint (fastify app, pre-serialized
 * document, TLS from files) and (b) a bare `node:https` server answering the same bytes with the
 * same headers and TLS settings. Both run in this process, one at a time, alternating rounds;
 * each side keeps its best round so load from other processes skews both alike.
 *
 * Goal: >= 0.9x the raw server.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBundleEndpointApp } from '../src/adapters/endpoint/app.js';
import { LocalBundle } from '../src/adapters/endpoint/local-bundle.js';
import { INTERMEDIATE_TLS12_CIPHERS, startBundleEndpoint } from '../src/adapters/endpoint/server.js';
import { FileTlsCredentials } from '../src/adapters/endpoint/tls-credentials.js';
import { createCa, createX509Svid } from '../src/adapters/pki/index.js';
import { TrustBundle } from '../src/core/bundle/trust-bundle.js';
import { SpiffeId } from '../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../src/core/spiffeid/trust-domain.js';
import { type BenchFigure, type BenchResult, compare } from './lib.js';

const CONNECTIONS = 50;
const SECONDS = Number(process.env.ENDPOINT_BENCH_SECONDS ?? 4);
/** Alternating rounds per side; each side keeps its best. */
const ROUNDS = Number(process.env.ENDPOINT_BENCH_ROUNDS ?? 3);

const autocannonCli = fileURLToPath(new URL('../node_modules/autocannon/autocannon.js', import.meta.url));

/** One load run: wall-clock throughput, and requests per CPU-second of this (the server's) process. */
interface LoadResult {
  readonly rps: number;
  readonly perCpuSecond: number;
}

/**
 * Runs autocannon against `url`. Besides requests per second, counts the server's CPU time
 * (this process; the load generator is another one): on a shared two-core machine, requests per
 * server-CPU-second is the figure that other processes' load does not distort.
 */
function load(url: string, seconds: number): Promise<LoadResult> {
  const cpu0 = process.cpuUsage();
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [autocannonCli, '-c', String(CONNECTIONS), '-d', String(seconds), '-j', url],
      // The bench uses a private test CA; autocannon's TLS client reads this to skip verification.
      {
        env: { ...process.env, NODE_TLS_REJECT_UNAUTHORIZED: '0' },
        maxBuffer: 16 << 20,
        timeout: (seconds + 30) * 1000,
      },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`autocannon failed: ${stderr || err.message}`));
          return;
        }
        const out = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
          '2xx': number;
          non2xx: number;
          errors: number;
          duration: number;
        };
        if (out.non2xx > 0 || out.errors > 0) {
          reject(new Error(`autocannon saw ${out.non2xx} non-2xx answers and ${out.errors} errors`));
          return;
        }
        const cpu = process.cpuUsage(cpu0);
        const cpuSeconds = (cpu.user + cpu.system) / 1e6;
        resolve({ rps: out['2xx'] / out.duration, perCpuSecond: out['2xx'] / cpuSeconds });
      },
    );
  });
}

/**
 * Change notification at the default cap: 10,000 requests held (fastify `inject`, so no sockets),
 * then one bundle change; measures the time until every one of them has its 200 answer, and the
 * heap held per waiting request. Run in a child process (bench/endpoint-held.ts): fastify's
 * `inject` leaves ~100 MB behind per 10,000 requests, which would slow every later measurement
 * in this process.
 */
export async function heldFigures(): Promise<BenchFigure[]> {
  const td = TrustDomain.parse('bench.test');
  const ca = await createCa({
    trustDomain: td,
    notBefore: new Date(0),
    notAfter: new Date(Date.now() + 86_400_000),
  });
  let bundle = TrustBundle.create({ trustDomain: td, x509Authorities: [ca.der], sequence: 1n });
  const local = new LocalBundle({ source: { getBundle: async () => bundle }, trustDomain: td });
  const doc = await local.refresh();
  const app = await buildBundleEndpointApp({ local, maxHeldRequests: 10_000 });
  const headers = { 'if-none-match': doc.etag, prefer: 'wait=60' };
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const pending = Array.from({ length: 10_000 }, () => app.inject({ method: 'GET', url: '/', headers }));
  while (app.bundleEndpoint.heldRequests() < 10_000) await new Promise((r) => setImmediate(r));
  gc?.();
  const perRequest = (process.memoryUsage().heapUsed - heapBefore) / 10_000;
  bundle = bundle.withSequence(2n);
  const t0 = performance.now();
  await local.refresh();
  const answers = await Promise.all(pending);
  const wakeMs = performance.now() - t0;
  await app.close();
  if (answers.some((a) => a.statusCode !== 200)) throw new Error('a held request was not answered 200');
  return [
    {
      kind: 'figure',
      name: 'wake 10,000 held requests on one bundle change (fastify inject)',
      value: Math.round(wakeMs),
      unit: 'ms',
      goal: '< 1000 ms',
      met: wakeMs < 1000,
      note: 'time from the change until all 10,000 have their 200 answer; one shared timer, O(waiters) wake-up',
    },
    {
      kind: 'figure',
      name: 'heap per held request (fastify request/reply + waiter)',
      value: Math.round(perRequest / 102.4) / 10,
      unit: 'KiB',
      goal: '< 16 KiB',
      met: perRequest < 16 * 1024,
      note: gc ? 'after gc' : 'approximate (run with --expose-gc for a settled figure)',
    },
  ];
}

function heldFiguresInChild(): Promise<BenchFigure[]> {
  const script = fileURLToPath(new URL('./endpoint-held.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', script],
      { maxBuffer: 1 << 20, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`held-request figures failed: ${stderr || err.message}`));
        else resolve(JSON.parse(stdout) as BenchFigure[]);
      },
    );
  });
}

export async function run(): Promise<(BenchResult | BenchFigure)[]> {
  const dir = await mkdtemp(join(tmpdir(), 'sb-bench-endpoint-'));
  const stop = new AbortController();
  const notBefore = new Date(Date.now() - 3600_000);
  const notAfter = new Date(Date.now() + 24 * 3600_000);
  try {
    const td = TrustDomain.parse('bench.test');
    const cas = await Promise.all([1, 2].map(() => createCa({ trustDomain: td, notBefore, notAfter })));
    const bundle = TrustBundle.create({
      trustDomain: td,
      x509Authorities: cas.map((c) => c.der),
      sequence: 42n,
    });
    const local = new LocalBundle({ source: { getBundle: async () => bundle }, trustDomain: td });
    const doc = await local.refresh();
    const cert = await createX509Svid({
      id: SpiffeId.parse('spiffe://bench.test/web'),
      issuer: cas[0]!,
      notBefore,
      notAfter,
      dnsNames: ['localhost'],
    });
    await writeFile(join(dir, 'tls.crt'), cert.pem);
    await writeFile(join(dir, 'tls.key'), cert.privateKeyPem!);

    const ours = await startBundleEndpoint(
      {
        host: '127.0.0.1',
        port: 0,
        local,
        credentials: new FileTlsCredentials({
          certFile: join(dir, 'tls.crt'),
          keyFile: join(dir, 'tls.key'),
        }),
      },
      stop.signal,
    );

    const headers = {
      'content-type': 'application/json',
      etag: doc.etag,
      'cache-control': `max-age=${doc.refreshHint}`,
      'content-length': String(doc.body.length),
    };
    const raw = createServer(
      {
        cert: cert.pem,
        key: cert.privateKeyPem!,
        minVersion: 'TLSv1.2',
        ciphers: INTERMEDIATE_TLS12_CIPHERS,
        ALPNProtocols: ['http/1.1'],
      },
      (_req, res) => {
        res.writeHead(200, headers);
        res.end(doc.body);
      },
    );
    raw.keepAliveTimeout = 72_000;
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    const rawUrl = `https://127.0.0.1:${(raw.address() as AddressInfo).port}/`;

    // Warm both (JIT, TLS session setup), then alternate measured rounds.
    await load(ours.url, 1);
    await load(rawUrl, 1);
    let best = 0;
    let bestRaw = 0;
    let bestCpu = 0;
    let bestCpuRaw = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const a = await load(ours.url, SECONDS);
      const b = await load(rawUrl, SECONDS);
      best = Math.max(best, a.rps);
      bestRaw = Math.max(bestRaw, b.rps);
      bestCpu = Math.max(bestCpu, a.perCpuSecond);
      bestCpuRaw = Math.max(bestCpuRaw, b.perCpuSecond);
    }
    const rawClosed = new Promise<void>((r) => raw.close(() => r()));
    raw.closeAllConnections();
    await rawClosed;
    stop.abort();
    await ours.closed;
    // After the throughput rounds, so its garbage cannot weigh on them.
    const held = await heldFiguresInChild();
    return [
      ...held,
      compare({
        name: `bundle endpoint GET / (fastify, pre-serialized, HTTPS keep-alive, ${CONNECTIONS} conns): req/s`,
        opsPerSec: best,
        baselineName: 'raw node:https serving the same bytes',
        baselineOpsPerSec: bestRaw,
        minRatio: 0.9,
      }),
      compare({
        name: 'bundle endpoint GET /: requests per server CPU-second',
        opsPerSec: bestCpu,
        baselineName: 'raw node:https serving the same bytes',
        baselineOpsPerSec: bestCpuRaw,
        minRatio: 0.9,
      }),
    ];
  } finally {
    stop.abort();
    await rm(dir, { recursive: true, force: true });
  }
}
