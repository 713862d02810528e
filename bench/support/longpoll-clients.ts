/**
 * Holds many change-notification requests on one bundle endpoint, from its own process: N TLS
 * connections, each sending `GET /` with the current ETag and `Prefer: wait=60`, and records when
 * each is answered and with what. Raw HTTP/1.1 on node:tls keeps the client lean.
 *
 * Usage: node longpoll-clients.js <url> <ca.pem> <count>
 * Prints `{"type":"held"}` once every request is sent, then one JSON line
 * `{"type":"done", answers: [[status, sequence, atMs]…], failures}` after all answered
 * (atMs = performance.timeOrigin + performance.now(), comparable across processes to the ms).
 * @module
 */
import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';

const [urlArg, caFile, countArg] = process.argv.slice(2);
const url = new URL(urlArg!);
const ca = readFileSync(caFile!, 'utf8');
const count = Number(countArg);
const port = Number(url.port);
const host = url.hostname;
const IN_FLIGHT = 100;

const now = (): number => performance.timeOrigin + performance.now();
const out = (m: unknown): void => {
  process.stdout.write(`${JSON.stringify(m)}\n`);
};

/** One request on a fresh connection; resolves with the parsed response when it is complete. */
function exchange(
  headers: string,
  onSent?: () => void,
): Promise<{ status: number; etag: string; body: string; at: number; socket: TLSSocket }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, ca, rejectUnauthorized: true, ALPNProtocols: ['http/1.1'] });
    let buf = '';
    socket.setEncoding('utf8');
    socket.once('secureConnect', () => {
      socket.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n${headers}\r\n`, () => onSent?.());
    });
    socket.on('data', (d: string) => {
      buf += d;
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.slice(0, end);
      const status = Number(head.slice(9, 12));
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? '0');
      const body = buf.slice(end + 4);
      if (Buffer.byteLength(body) < length) return;
      resolve({ status, etag: /\r\netag:\s*(\S+)/i.exec(head)?.[1] ?? '', body, at: now(), socket });
    });
    socket.on('error', reject);
  });
}

const first = await exchange('');
first.socket.destroy();
const etag = first.etag;

const answers: [number, string, number][] = [];
let failures = 0;
let sent = 0;
const pending: Promise<void>[] = [];
let next = 0;
let opened = 0;
await new Promise<void>((allSent) => {
  const launch = (): void => {
    while (next < count && opened - sent < IN_FLIGHT) {
      next++;
      opened++;
      let wasSent = false;
      pending.push(
        exchange(`If-None-Match: ${etag}\r\nPrefer: wait=60\r\n`, () => {
          wasSent = true;
          sent++;
          if (sent === count) allSent();
          launch();
        }).then(
          (r) => {
            answers.push([r.status, /"spiffe_sequence":\s*(\d+)/.exec(r.body)?.[1] ?? '', r.at]);
            r.socket.destroy();
          },
          () => {
            failures++;
            if (wasSent) return;
            sent++;
            if (sent === count) allSent();
            launch();
          },
        ),
      );
    }
  };
  launch();
});
out({ type: 'held', sent, failures });
await Promise.all(pending);
out({ type: 'done', answers, failures });
