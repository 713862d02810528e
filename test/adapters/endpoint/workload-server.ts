/**
 * Starts test/interop/cmd/workload-api: a SPIFFE Workload API server built from go-spiffe v2's
 * generated gRPC code, streaming an X509-SVID from PEM files (re-sent when they change).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { IssuedCert } from '../../../src/adapters/pki/index.js';

export function workloadApiBinary(): string {
  const cache = process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
  return join(cache, 'bin', 'interop', 'workload-api');
}

/** True when the binary exists; otherwise warns loudly, or throws with CI=true. */
export function workloadApiOrSkip(suite: string): boolean {
  const path = workloadApiBinary();
  if (existsSync(path)) return true;
  const message = `go-spiffe Workload API server missing for "${suite}": ${path} (run scripts/install-interop.sh)`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead of skipping)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPING ${message}\n${'!'.repeat(100)}\n`);
  return false;
}

export interface WorkloadApiServer {
  readonly socketPath: string;
  /** Replaces the served SVID (the server notices within ~100 ms and streams it). */
  serve(svid: IssuedCert, bundle: IssuedCert): Promise<void>;
  stop(): Promise<void>;
}

export async function startWorkloadApiServer(
  id: string,
  svid: IssuedCert,
  bundle: IssuedCert,
): Promise<WorkloadApiServer> {
  const dir = await mkdtemp('/tmp/sbwl-');
  const files = { svid: join(dir, 'svid.pem'), key: join(dir, 'key.pem'), bundle: join(dir, 'bundle.pem') };
  const serve = async (s: IssuedCert, b: IssuedCert): Promise<void> => {
    // Key first, then the chain: the server compares all three, so a half-written pair is at worst
    // streamed once and then replaced (the client refuses the mismatched one).
    await writeFile(files.key, s.privateKeyPem!);
    await writeFile(files.bundle, b.pem);
    await writeFile(files.svid, s.pem);
  };
  await serve(svid, bundle);
  const socketPath = join(dir, 'agent.sock');
  const child: ChildProcess = spawn(
    workloadApiBinary(),
    ['-socket', socketPath, '-id', id, '-svid', files.svid, '-key', files.key, '-bundle', files.bundle],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`workload-api exited ${code}: ${err}`)));
  });
  return {
    socketPath,
    serve,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
