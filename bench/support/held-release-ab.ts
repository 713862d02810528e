/**
 * A controlled experiment behind the long-poll benchmark's analysis (docs/benchmarks.md): how much
 * a server's heap slows the release of many held requests, everything else equal. Two bare
 * node:https servers hold N long-polls each (from a clients process, one TLS connection each)
 * and answer them all in one loop, exactly as bench/support/raw-longpoll-server.ts does; server B
 * also keeps EXTRA_MB of small live objects (what a bigger program's heap looks like to the GC).
 * Rounds alternate between A and B; it prints the median answering loop and client p99 of each.
 *
 * Usage: N=5000 ROUNDS=5 EXTRA_MB=15 node --import tsx bench/support/held-release-ab.ts
 * (not part of `npm run bench`: a diagnostic).
 * @module
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { createWebServerCert } from './web-cert.js';

const SELF = fileURLToPath(import.meta.url);
const BODY = Buffer.from(
  JSON.stringify({
    keys: Array.from({ length: 3 }, () => ({
      kty: 'EC',
      use: 'x509-svid',
      crv: 'P-256',
      x5c: ['M'.repeat(600)],
    })),
    spiffe_sequence: 2,
  }),
);
type Msg = { type: string; [k: string]: unknown };
const send = (m: Msg): void => {
  process.send?.(m);
};

function server(certPem: string, keyPem: string, extraMb: number): void {
  // Small objects with pointers: marking cost grows with their number, not their bytes.
  const extra: unknown[] = [];
  for (let i = 0; i < (extraMb * 1024 * 1024) / 200; i++)
    extra.push({ a: i, b: `x${i}`, c: [i, i + 1], d: { e: i } });
  (globalThis as { extra?: unknown }).extra = extra;
  const held = new Set<ServerResponse>();
  const headers = {
    'content-type': 'application/json',
    'content-length': String(BODY.length),
    etag: '"next"',
    'cache-control': 'max-age=300',
    'preference-applied': 'wait=60',
  };
  const s = createServer({ cert: certPem, key: keyPem, ALPNProtocols: ['http/1.1'] }, (_req, res) => {
    held.add(res);
    res.on('close', () => held.delete(res));
  });
  s.keepAliveTimeout = 72_000;
  s.listen(0, '127.0.0.1', () => send({ type: 'listening', port: (s.address() as AddressInfo).port }));
  process.on('message', (m: Msg) => {
    if (m.type === 'count') send({ type: 'count', n: held.size });
    if (m.type === 'release') {
      const t0 = performance.now();
      for (const res of held) {
        res.writeHead(200, headers);
        res.end(BODY);
      }
      held.clear();
      const loopMs = performance.now() - t0;
      setImmediate(() => send({ type: 'released', loopMs }));
    }
  });
}

function clients(port: number, n: number): void {
  const at: number[] = [];
  let connected = 0;
  for (let i = 0; i < n; i++) {
    const s = connect(
      { port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] },
      () => {
        s.write('GET / HTTP/1.1\r\nHost: ab\r\nPrefer: wait=60\r\n\r\n');
        if (++connected === n) send({ type: 'held' });
      },
    );
    s.setEncoding('latin1');
    let got = '';
    s.on('data', (d: string) => {
      got += d;
      if (got.endsWith('}')) {
        at.push(performance.timeOrigin + performance.now());
        if (at.length === n) send({ type: 'done', at });
      }
    });
    s.on('error', () => undefined);
  }
}

function once(p: ChildProcess, type: string): Promise<Msg> {
  return new Promise((resolve) => {
    const on = (m: Msg): void => {
      if (m.type !== type) return;
      p.off('message', on);
      resolve(m);
    };
    p.on('message', on);
  });
}

async function main(): Promise<void> {
  const n = Number(process.env.N ?? 5000);
  const rounds = Number(process.env.ROUNDS ?? 5);
  const cert = await createWebServerCert();
  const servers: Record<'A' | 'B', { p: ChildProcess; port: number }> = {} as never;
  for (const [name, mb] of [
    ['A', '0'],
    ['B', process.env.EXTRA_MB ?? '15'],
  ] as const) {
    const p = fork(SELF, ['server', cert.certPem, cert.keyPem, mb], { execArgv: process.execArgv });
    servers[name] = { p, port: (await once(p, 'listening')).port as number };
  }
  const results: Record<'A' | 'B', { loop: number; p99: number }[]> = { A: [], B: [] };
  for (let r = 0; r < rounds * 2; r++) {
    const name = r % 2 === 0 ? 'A' : 'B';
    const { p, port } = servers[name];
    const c = fork(SELF, ['clients', String(port), String(n)], { execArgv: process.execArgv });
    await once(c, 'held');
    for (;;) {
      p.send({ type: 'count' });
      if (((await once(p, 'count')).n as number) >= n) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    await new Promise((res) => setTimeout(res, 500));
    const start = performance.timeOrigin + performance.now();
    const done = once(c, 'done');
    p.send({ type: 'release' });
    const { loopMs } = await once(p, 'released');
    const at = ((await done).at as number[]).sort((x, y) => x - y);
    results[name].push({
      loop: loopMs as number,
      p99: (at[Math.ceil(0.99 * at.length) - 1] ?? Number.NaN) - start,
    });
    c.kill();
    await new Promise((res) => setTimeout(res, 500));
  }
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;
  for (const name of ['A', 'B'] as const) {
    const rs = results[name];
    process.stdout.write(
      `${name}${name === 'B' ? ` (+${process.env.EXTRA_MB ?? '15'} MB of small objects)` : ''}: loop median ${median(rs.map((x) => x.loop)).toFixed(1)} ms, p99 median ${median(rs.map((x) => x.p99)).toFixed(1)} ms; loops ${rs.map((x) => Math.round(x.loop)).join(' / ')}\n`,
    );
  }
  for (const s of Object.values(servers)) s.p.kill();
}

const [role, ...args] = process.argv.slice(2);
if (role === 'server') server(args[0]!, args[1]!, Number(args[2]));
else if (role === 'clients') clients(Number(args[0]), Number(args[1]));
else await main();
