/**
 * Starts real `spire-server` processes for tests: one trust domain each, SQLite datastore and
 * memory key manager in a short temp dir under /tmp, the server API on a unix socket there, the
 * TCP API on a free 127.0.0.1 port, optionally a SPIFFE bundle endpoint (https_spiffe). Waits
 * for gRPC health on the socket, runs CLI commands against an instance, and stops it cleanly.
 *
 * The binary comes from scripts/install-spire.sh (or $SPIRE_SERVER_BIN). When it is missing,
 * {@link realSpireOrSkip} makes suites skip loudly — except with CI=true, where they fail.
 *
 * Config facts: /work/shared/notes/real-components.md §A (server.conf keys, plugins, readiness).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  freePort,
  type SpireCliResult,
  type SpireProcessOptions,
  type SpireServerProcess,
  startSpireServerProcess,
} from '../../src/lab/spire-process.js';

export { freePort };

/** The SPIRE version the suites are written against. */
export const SPIRE_VERSION = '1.15.3';

/** Path of the spire-server binary: $SPIRE_SERVER_BIN, else the install script's target. */
export function spireServerBinary(): string {
  const explicit = process.env.SPIRE_SERVER_BIN;
  if (explicit) return explicit;
  const cache = process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
  return join(cache, 'bin', 'spire-server');
}

/** Whether a usable spire-server binary is installed, and why not. */
export type SpireBinaryStatus =
  | { readonly available: true; readonly path: string; readonly version: string }
  | { readonly available: false; readonly path: string; readonly reason: string };

let cachedStatus: SpireBinaryStatus | undefined;

/** Checks the binary once per process (runs `spire-server --version`, which prints on stderr). */
export async function spireServerStatus(): Promise<SpireBinaryStatus> {
  if (cachedStatus) return cachedStatus;
  const path = spireServerBinary();
  if (!existsSync(path)) {
    cachedStatus = {
      available: false,
      path,
      reason: `${path} does not exist (run scripts/install-spire.sh)`,
    };
    return cachedStatus;
  }
  cachedStatus = await new Promise<SpireBinaryStatus>((resolve) => {
    execFile(path, ['--version'], { timeout: 10_000 }, (err, stdout, stderr) => {
      const version = `${stderr}${stdout}`.trim().split('\n')[0] ?? '';
      if (err) resolve({ available: false, path, reason: `${path} --version failed: ${err.message}` });
      else if (!version.startsWith(SPIRE_VERSION)) {
        resolve({
          available: false,
          path,
          reason: `${path} reports ${version}, the suites need ${SPIRE_VERSION}`,
        });
      } else resolve({ available: true, path, version });
    });
  });
  return cachedStatus;
}

/**
 * For `describe.skipIf(!(await realSpireOrSkip('suite name')))`: true when real spire-server can
 * run. When it cannot, prints a loud warning and returns false — or, with CI=true, throws so the
 * suite fails instead of silently skipping.
 */
export async function realSpireOrSkip(suite: string): Promise<boolean> {
  const status = await spireServerStatus();
  if (status.available) return true;
  const message = `real SPIRE unavailable for "${suite}": ${status.reason}`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead of skipping)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPING ${message}\n${'!'.repeat(100)}\n`);
  return false;
}

/** Options of {@link startSpireServer}: those of a SPIRE process, less the binary and directory it picks. */
export type SpireServerOptions = Omit<SpireProcessOptions, 'bin' | 'dir'>;

/** Result of a CLI command. */
export type CliResult = SpireCliResult;

/** An X509-SVID written by `spire-server x509 mint -write`. */
export interface MintedFiles {
  readonly certChainPem: string;
  readonly privateKeyPem: string;
  readonly bundlePem: string;
}

/** A running spire-server: the process (src/lab/spire-process.ts) plus CLI helpers for tests. */
export interface SpireServerInstance extends SpireServerProcess {
  /** `bundle show -format spiffe`: the server's own bundle as SPIFFE bundle JSON. */
  bundleShow(): Promise<string>;
  /** `bundle set -format spiffe -id spiffe://<td>`: stores a federated bundle. */
  bundleSet(trustDomain: string, spiffeBundleJson: string): Promise<void>;
  /** `bundle list -format spiffe -output json`. */
  bundleList(): Promise<string>;
  /** `x509 mint -spiffeID <id> -ttl <ttl> -write <tmp>` → PEMs. */
  x509Mint(spiffeId: string, ttl?: string): Promise<MintedFiles>;
  /** SIGTERM, then SIGKILL after `timeoutMs` (default 10 s); removes the temp dir. */
  stop(timeoutMs?: number): Promise<void>;
}

const running = new Set<SpireServerInstance>();

/**
 * Starts a spire-server (src/lab/spire-process.ts does the process work, as for `spiffe-broker
 * lab`) and adds the CLI helpers tests use.
 * @throws Error with the server's log tail when it exits early or is not healthy in time.
 */
export async function startSpireServer(opts: SpireServerOptions): Promise<SpireServerInstance> {
  const status = await spireServerStatus();
  if (!status.available) throw new Error(`spire-server unavailable: ${status.reason}`);
  // Short dir: unix socket paths must stay under ~100 bytes.
  const dir = await mkdtemp('/tmp/spsv-');
  let proc: SpireServerProcess;
  try {
    proc = await startSpireServerProcess({
      bin: status.path,
      ...opts,
      logLevel: opts.logLevel ?? 'DEBUG',
      dir,
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const instance: SpireServerInstance = {
    ...proc,
    bundleShow: () => proc.cliOk(['bundle', 'show', '-format', 'spiffe']),
    async bundleSet(td, json) {
      await proc.cliOk(['bundle', 'set', '-format', 'spiffe', '-id', `spiffe://${td}`], { stdin: json });
    },
    bundleList: () => proc.cliOk(['bundle', 'list', '-format', 'spiffe', '-output', 'json']),
    async x509Mint(spiffeId, ttl = '1h') {
      const out = mkdtempSync(join(dir, 'mint-'));
      await proc.cliOk(['x509', 'mint', '-spiffeID', spiffeId, '-ttl', ttl, '-write', out]);
      const files = {
        certChainPem: readFileSync(join(out, 'svid.pem'), 'utf8'),
        privateKeyPem: readFileSync(join(out, 'key.pem'), 'utf8'),
        bundlePem: readFileSync(join(out, 'bundle.pem'), 'utf8'),
      };
      rmSync(out, { recursive: true, force: true });
      return files;
    },
    async stop(timeoutMs = 10_000) {
      running.delete(instance);
      await proc.stop(timeoutMs);
      await rm(dir, { recursive: true, force: true });
    },
  };
  running.add(instance);
  return instance;
}

/** Stops every instance started by this process that is still running. */
export async function stopAllSpireServers(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}
