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
import { TrustBundle } from '../src/bundle/trust-bundle.js';
import { LocalBundle } from '../src/endpoint/local-bundle.js';
import { INTERMEDIATE_TLS12_CIPHERS, startBundleEndpoint } from '../src/endpoint/server.js';
import { FileTlsCredentials } from '../src/endpoint/tls-credentials.js';
import { createCa, createX509Svid } from '../src/pki/index.js';
import { SpiffeId } from '../src/spiffeid/spiffe-id.js';
import { TrustDomain } from '../src/spiffeid/trust-domain.js';
import { type BenchResult, compare } from './lib.js';

const CONNECTIONS = 50;
const SECONDS = Number(process.env.ENDPOINT_BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.ENDPOINT_BENCH_ROUNDS ?? 2);

const autocannonCli = fileURLToPath(new URL('../node_modules/autocannon/autocannon.js', import.meta.url));

/** Runs autocannon against `url`; returns requests per second (2xx only). */
function load(url: string, seconds: number): Promise<number> {
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
        resolve(out['2xx'] / out.duration);
      },
    );
  });
}

export async function run(): Promise<BenchResult[]> {
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
    for (let r = 0; r < ROUNDS; r++) {
      best = Math.max(best, await load(ours.url, SECONDS));
      bestRaw = Math.max(bestRaw, await load(rawUrl, SECONDS));
    }
    const rawClosed = new Promise<void>((r) => raw.close(() => r()));
    raw.closeAllConnections();
    await rawClosed;
    stop.abort();
    await ours.closed;
    return [
      compare({
        name: `bundle endpoint GET / (fastify, pre-serialized, HTTPS keep-alive, ${CONNECTIONS} conns)`,
        opsPerSec: best,
        baselineName: 'raw node:https serving the same bytes',
        baselineOpsPerSec: bestRaw,
        minRatio: 0.9,
      }),
    ];
  } finally {
    stop.abort();
    await rm(dir, { recursive: true, force: true });
  }
}
