/**
 * Baseline for the broker's per-fetch CPU: plain node:https GETs, each on a fresh TLS connection
 * (as the broker fetches: no keep-alive, no session resumption) with one shared TLS context for
 * the CA and `If-None-Match`, one at a time at a fixed rate: the floor a fetch costs. Prints `{ cpuMsPerFetch, fetches, statuses }`.
 *
 * Usage: node bench/support/raw-fetch-child.ts <urls.json> <ca.pem> <count> <perSecond>
 * (urls.json: an array of `{ url, etag }`).
 * @module
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { createSecureContext } from 'node:tls';

const [urlsFile, caFile, countArg, rateArg] = process.argv.slice(2);
const targets = JSON.parse(readFileSync(urlsFile!, 'utf8')) as { url: string; etag: string }[];
const secureContext = createSecureContext({ ca: readFileSync(caFile!, 'utf8'), minVersion: 'TLSv1.2' });
const count = Number(countArg);
const perSecond = Number(rateArg);

function once(t: { url: string; etag: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      t.url,
      {
        // Passed on to tls.connect (not in https.RequestOptions' type).
        ...({ secureContext } as Record<string, unknown>),
        agent: false,
        // The bench fleet's per-peer host names (*.fleet.test) do not resolve: dial 127.0.0.1.
        lookup: ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) =>
          opts?.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) as never,
        headers: { 'if-none-match': t.etag, connection: 'close' },
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const statuses: Record<number, number> = {};
// Warm-up, not measured.
for (let i = 0; i < 20; i++) await once(targets[i % targets.length]!);
const before = process.cpuUsage();
const started = performance.now();
for (let i = 0; i < count; i++) {
  const due = started + (i * 1000) / perSecond;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const status = await once(targets[i % targets.length]!);
  statuses[status] = (statuses[status] ?? 0) + 1;
}
const cpu = process.cpuUsage(before);
process.stdout.write(
  `${JSON.stringify({ cpuMsPerFetch: (cpu.user + cpu.system) / 1000 / count, fetches: count, statuses })}\n`,
);
