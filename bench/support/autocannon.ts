/**
 * Runs autocannon in a child process (so the load generator never shares the measured event loop)
 * and returns its JSON summary.
 * @module
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../node_modules/autocannon/autocannon.js', import.meta.url));

/** The part of autocannon's JSON result the benchmarks read. */
export interface AutocannonResult {
  readonly '2xx': number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly duration: number;
  readonly requests: { readonly average: number; readonly total: number };
  readonly latency: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly statusCodeStats?: Record<string, { count: number }>;
}

export interface AutocannonOptions {
  readonly url: string;
  readonly connections: number;
  readonly seconds: number;
  readonly method?: 'GET' | 'POST';
  readonly body?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export function autocannon(o: AutocannonOptions): Promise<AutocannonResult> {
  const args = [CLI, '-c', String(o.connections), '-d', String(o.seconds), '-j'];
  if (o.method) args.push('-m', o.method);
  if (o.body !== undefined) args.push('-b', o.body);
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}=${v}`);
  args.push(o.url);
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      args,
      {
        // The benchmarks use private test CAs; autocannon's TLS client reads this to skip verification.
        env: { ...process.env, NODE_TLS_REJECT_UNAUTHORIZED: '0' },
        maxBuffer: 64 << 20,
        timeout: (o.seconds + 60) * 1000,
      },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`autocannon failed: ${stderr || err.message}`));
          return;
        }
        resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as AutocannonResult);
      },
    );
  });
}
