/**
 * Runs go-spiffe v2's `federation.NewHandler` as a real bundle endpoint (test/interop/cmd/serve,
 * built by scripts/install-interop.sh into ~/.cache/spiffe-broker/bin/interop/serve). Skips
 * loudly when the binary is missing, except with CI=true, where suites fail instead.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Path of the go-spiffe serve program. */
export function goServeBinary(): string {
  const cache = process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
  return join(cache, 'bin', 'interop', 'serve');
}

/** True when the binary exists; otherwise warns loudly, or throws with CI=true. */
export function goServeOrSkip(suite: string): boolean {
  const path = goServeBinary();
  if (existsSync(path)) return true;
  const message = `go-spiffe interop program missing for "${suite}": ${path} (run scripts/install-interop.sh)`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead of skipping)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPING ${message}\n${'!'.repeat(100)}\n`);
  return false;
}

export type GoServeTls =
  | { readonly profile: 'https_spiffe'; readonly svidFile: string; readonly keyFile: string }
  | { readonly profile: 'https_web'; readonly certFile: string; readonly keyFile: string };

/** A running go-spiffe bundle endpoint. */
export interface GoServe {
  /** `https://127.0.0.1:<port>/` */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Starts the server on 127.0.0.1:0 and waits for its "listening" line. */
export function startGoServe(trustDomain: string, bundleFile: string, tls: GoServeTls): Promise<GoServe> {
  const args = [
    '-listen',
    '127.0.0.1:0',
    '-trust-domain',
    trustDomain,
    '-bundle',
    bundleFile,
    '-profile',
    tls.profile,
  ];
  if (tls.profile === 'https_spiffe') args.push('-svid', tls.svidFile, '-svid-key', tls.keyFile);
  else args.push('-cert', tls.certFile, '-key', tls.keyFile);
  const child: ChildProcess = spawn(goServeBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`go-spiffe serve did not start within 15 s: ${err}`));
    }, 15_000);
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`go-spiffe serve exited (${code}): ${err.trim()}`));
    });
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening https:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      const port = Number(m[1]);
      resolve({
        url: `https://127.0.0.1:${port}/`,
        port,
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) {
              done();
              return;
            }
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
  });
}
