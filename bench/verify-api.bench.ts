/**
 * Verify API throughput against the library and bare node:crypto, measured in the same run:
 * - verify API: `POST /v1/verify/x509` with a JSON `{chain}` (EC P-256 leaf + intermediate), over
 *   loopback HTTP/1.1 keep-alive, 32 connections, driven by autocannon in a child process (the
 *   server runs in this process); the X509VerifyCache is warm after the first request, as it is for
 *   a service whose peers present the same SVIDs;
 * - library: `verifyX509Svid` with an X509VerifyCache, in-process;
 * - baseline: node:crypto `new X509Certificate` ×3 + `verify` ×2 of the same chain.
 *
 * Goals: the API at least matches doing the raw crypto in-process (>= 1x; the cache makes each
 * request's verification cheaper than the HTTP around it), the library >= 10x. The API-to-library
 * ratio shows what HTTP costs. About 15 s in all.
 * @module
 */
import { execFile } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { buildVerifyApiApp } from '../src/adapters/verify-api/index.js';
import { BundleSet } from '../src/core/bundle/source.js';
import { TrustBundle } from '../src/core/bundle/trust-bundle.js';
import { verifyX509Svid, X509VerifyCache } from '../src/core/verify/index.js';
import { type BenchResult, compare, measurePair } from './lib.js';
import { benchSvidChain } from './support/svid-chain.js';

const CONNECTIONS = 32;
const SECONDS = Number(process.env.VERIFY_API_BENCH_SECONDS ?? 5);

const autocannonCli = fileURLToPath(new URL('../node_modules/autocannon/autocannon.js', import.meta.url));

/** Requests per second autocannon measured against `url` with `body`; fails on any non-2xx. */
function load(url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [
        autocannonCli,
        '-c',
        String(CONNECTIONS),
        '-d',
        String(SECONDS),
        '-m',
        'POST',
        '-H',
        'content-type=application/json',
        '-b',
        body,
        '-j',
        url,
      ],
      { maxBuffer: 16 << 20, timeout: (SECONDS + 30) * 1000 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`autocannon failed: ${stderr || err.message}`));
          return;
        }
        const out = JSON.parse(stdout) as { requests: { average: number }; non2xx: number; errors: number };
        if (out.non2xx > 0 || out.errors > 0) {
          reject(new Error(`autocannon saw ${out.non2xx} non-2xx answers and ${out.errors} errors`));
          return;
        }
        resolve(out.requests.average);
      },
    );
  });
}

/** Runs the comparison; about 15 s. */
export async function run(): Promise<BenchResult[]> {
  const { trustDomain: td, root, intermediate, leaf, rawVerify: raw } = await benchSvidChain();
  const source = new BundleSet([TrustBundle.create({ trustDomain: td, x509Authorities: [root.der] })]);
  const chain = [leaf.der, intermediate.der];

  const cache = new X509VerifyCache();
  const library = () => {
    if (!verifyX509Svid(chain, source, { now: Date.now(), cache }).ok)
      throw new Error('library verification failed');
  };
  const [libraryOps, rawOps] = await measurePair(library, raw, { minMs: 1000, rounds: 2 });

  const app = buildVerifyApiApp({ source });
  await app.listen({ host: '127.0.0.1', port: 0 });
  let apiOps: number;
  try {
    const { port } = app.server.address() as AddressInfo;
    const body = JSON.stringify({ chain: leaf.pem + intermediate.pem });
    const check = await app.inject({
      method: 'POST',
      url: '/v1/verify/x509',
      payload: body,
      // The API answers only the Host names of the address it listens on (DNS rebinding).
      headers: { 'content-type': 'application/json', host: `127.0.0.1:${port}` },
    });
    if (check.statusCode !== 200) throw new Error(`verify API refused the bench chain: ${check.body}`);
    apiOps = await load(`http://127.0.0.1:${port}/v1/verify/x509`, body);
  } finally {
    await app.close();
  }

  const rawName = 'node:crypto new X509Certificate x3 + verify x2 (in-process)';
  return [
    compare({
      name: `verify API POST /v1/verify/x509 (HTTP keep-alive, ${CONNECTIONS} conns, autocannon)`,
      opsPerSec: apiOps,
      baselineName: rawName,
      baselineOpsPerSec: rawOps,
      minRatio: 1,
    }),
    compare({
      name: 'library verifyX509Svid (X509VerifyCache hit)',
      opsPerSec: libraryOps,
      baselineName: rawName,
      baselineOpsPerSec: rawOps,
      minRatio: 10,
    }),
    compare({
      name: 'verify API over HTTP',
      opsPerSec: apiOps,
      baselineName: 'library verifyX509Svid (cache hit), same run',
      baselineOpsPerSec: libraryOps,
      minRatio: 0.02,
    }),
  ];
}
