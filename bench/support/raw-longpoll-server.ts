/**
 * Baseline for the long-poll benchmark: a bare node:https server (same TLS settings as the
 * endpoint) that holds every `GET /` carrying `Prefer: wait` and, on the IPC message
 * `{ type: 'release', file, etag, cacheControl }`, answers them all 200 with that document (the
 * bytes and headers the broker answered with, so both write as much) — the floor for holding and
 * waking N requests on one Node process. Sends `{ type: 'listening', url }`, then
 * `{ type: 'published', at, sequence }` right before the release loop, and answers
 * `{ type: 'stats' }` with `{ type: 'stats', heldRequests }`.
 *
 * Usage (forked with IPC): node raw-longpoll-server.js <cert.pem> <key.pem>
 * @module
 */
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { writeHeapSnapshot } from 'node:v8';
import { INTERMEDIATE_TLS12_CIPHERS } from '../../src/adapters/endpoint/server.js';

const [certFile, keyFile] = process.argv.slice(2);
const send = (m: unknown): void => {
  process.send?.(m);
};
let body = Buffer.from('{"keys":[],"spiffe_sequence":1}');
const held = new Set<ServerResponse>();
const server = createServer(
  {
    cert: readFileSync(certFile!, 'utf8'),
    key: readFileSync(keyFile!, 'utf8'),
    minVersion: 'TLSv1.2',
    ciphers: INTERMEDIATE_TLS12_CIPHERS,
    ALPNProtocols: ['http/1.1'],
  },
  (req, res) => {
    if (req.headers.prefer === undefined) {
      res.writeHead(200, {
        'content-type': 'application/json',
        etag: '"old"',
        'content-length': body.length,
      });
      res.end(body);
      return;
    }
    held.add(res);
    res.on('close', () => held.delete(res));
  },
);
server.keepAliveTimeout = 72_000;
server.listen(0, '127.0.0.1', () => {
  send({ type: 'listening', url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/` });
});
let snapshotTaken = false;
process.on('message', (m: { type: string; file?: string; etag?: string; cacheControl?: string }) => {
  if (m.type === 'stats') {
    // RAW_SNAPSHOT_WHEN_HOLDING=<n>:<file>: as BROKER_CHILD_SNAPSHOT_WHEN_HOLDING (broker-child.ts).
    const spec = process.env.RAW_SNAPSHOT_WHEN_HOLDING;
    if (spec && !snapshotTaken && held.size >= Number(spec.split(':')[0])) {
      snapshotTaken = true;
      setImmediate(() => writeHeapSnapshot(spec.split(':')[1]));
    }
    send({ type: 'stats', heldRequests: held.size });
  } else if (m.type === 'release') {
    body = readFileSync(m.file!);
    const sequence = String(
      (JSON.parse(body.toString('utf8')) as { spiffe_sequence: number }).spiffe_sequence,
    );
    const { etag, cacheControl } = m;
    const start = performance.now();
    send({ type: 'published', at: performance.timeOrigin + performance.now(), sequence });
    for (const res of held) {
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': body.length,
        etag: etag!,
        'cache-control': cacheControl!,
        'preference-applied': 'wait=60',
      });
      res.end(body);
    }
    held.clear();
    setImmediate(() => send({ type: 'released', ms: performance.now() - start }));
  } else if (m.type === 'stop') {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
