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
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { SpireServerClient } from '../../src/spire/client.js';

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

/** A free TCP port on 127.0.0.1 (bound and released; a small race is accepted in tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Options of {@link startSpireServer}. */
export interface SpireServerOptions {
  readonly trustDomain: string;
  /** SPIFFE IDs allowed to use the admin API over TCP (`admin_ids`). */
  readonly adminIds?: readonly string[];
  /** Also serve the SPIFFE bundle endpoint (https_spiffe profile) on a free port. */
  readonly bundleEndpoint?: boolean;
  /** `federation.bundle_endpoint.refresh_hint`; SPIRE's minimum is 1m. Default "1m". */
  readonly bundleEndpointRefreshHint?: string;
  /** Default "24h". */
  readonly caTtl?: string;
  /** Default "1h". */
  readonly defaultX509SvidTtl?: string;
  /** Default "DEBUG". */
  readonly logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** How long to wait for health, ms. Default 60 000. */
  readonly readyTimeoutMs?: number;
}

/** Result of a CLI command. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** An X509-SVID written by `spire-server x509 mint -write`. */
export interface MintedFiles {
  readonly certChainPem: string;
  readonly privateKeyPem: string;
  readonly bundlePem: string;
}

/** A running spire-server. */
export interface SpireServerInstance {
  readonly trustDomain: string;
  readonly dir: string;
  readonly socketPath: string;
  /** `unix://<socketPath>` */
  readonly address: string;
  readonly tcpPort: number;
  /** `dns:///127.0.0.1:<tcpPort>` */
  readonly tcpAddress: string;
  /** Present when started with `bundleEndpoint: true`. */
  readonly bundleEndpointPort?: number;
  /** `https://127.0.0.1:<port>` of the bundle endpoint. */
  readonly bundleEndpointUrl?: string;
  readonly pid: number;
  /**
   * Runs `spire-server <args…> -socketPath <sock>` (the flag goes after the subcommand).
   * Does not throw on a non-zero exit: check `code`.
   */
  cli(args: readonly string[], opts?: { stdin?: string }): Promise<CliResult>;
  /** Like {@link SpireServerInstance.cli} but throws with the output on a non-zero exit. */
  cliOk(args: readonly string[], opts?: { stdin?: string }): Promise<string>;
  /** `bundle show -format spiffe`: the server's own bundle as SPIFFE bundle JSON. */
  bundleShow(): Promise<string>;
  /** `bundle set -format spiffe -id spiffe://<td>`: stores a federated bundle. */
  bundleSet(trustDomain: string, spiffeBundleJson: string): Promise<void>;
  /** `bundle list -format spiffe -output json`. */
  bundleList(): Promise<string>;
  /** `localauthority {x509,jwt} prepare -output json` → the prepared authority ID. */
  prepareAuthority(kind: 'x509' | 'jwt'): Promise<string>;
  /** `localauthority {x509,jwt} activate -authorityID <id>`. */
  activateAuthority(kind: 'x509' | 'jwt', authorityId: string): Promise<void>;
  /** `x509 mint -spiffeID <id> -ttl <ttl> -write <tmp>` → PEMs. */
  x509Mint(spiffeId: string, ttl?: string): Promise<MintedFiles>;
  /** Everything the process wrote so far (stdout + stderr). */
  logs(): string;
  /** SIGTERM, then SIGKILL after `timeoutMs` (default 10 s); removes the temp dir. */
  stop(timeoutMs?: number): Promise<void>;
}

const running = new Set<SpireServerInstance>();

function renderConfig(o: {
  trustDomain: string;
  dir: string;
  tcpPort: number;
  bundlePort: number | undefined;
  opts: SpireServerOptions;
}): string {
  const admin = (o.opts.adminIds ?? []).map((id) => JSON.stringify(id)).join(', ');
  const federation =
    o.bundlePort === undefined
      ? ''
      : `
    federation {
        bundle_endpoint {
            address = "127.0.0.1"
            port = ${o.bundlePort}
            refresh_hint = "${o.opts.bundleEndpointRefreshHint ?? '1m'}"
            profile "https_spiffe" {}
        }
    }`;
  return `server {
    trust_domain = "${o.trustDomain}"
    bind_address = "127.0.0.1"
    bind_port = "${o.tcpPort}"
    socket_path = "${o.dir}/api.sock"
    data_dir = "${o.dir}/data"
    log_level = "${o.opts.logLevel ?? 'DEBUG'}"
    ca_key_type = "ec-p256"
    ca_ttl = "${o.opts.caTtl ?? '24h'}"
    default_x509_svid_ttl = "${o.opts.defaultX509SvidTtl ?? '1h'}"
    admin_ids = [${admin}]${federation}
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "${o.dir}/data/datastore.sqlite3"
        }
    }
    KeyManager "memory" {
        plugin_data {}
    }
}
`;
}

function runCli(bin: string, args: readonly string[], stdin: string | undefined): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      bin,
      [...args],
      { timeout: 30_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (stdin !== undefined) child.stdin?.end(stdin);
    else child.stdin?.end();
  });
}

/**
 * Starts a spire-server and waits until its gRPC health check on the socket answers SERVING.
 * @throws Error with the server's log tail when it exits early or is not healthy in time.
 */
export async function startSpireServer(opts: SpireServerOptions): Promise<SpireServerInstance> {
  const status = await spireServerStatus();
  if (!status.available) throw new Error(`spire-server unavailable: ${status.reason}`);
  const bin = status.path;
  // Short dir: unix socket paths must stay under ~100 bytes.
  const dir = await mkdtemp('/tmp/spsv-');
  const tcpPort = await freePort();
  const bundlePort = opts.bundleEndpoint ? await freePort() : undefined;
  const confPath = join(dir, 'server.conf');
  await writeFile(confPath, renderConfig({ trustDomain: opts.trustDomain, dir, tcpPort, bundlePort, opts }));
  const child: ChildProcess = spawn(bin, ['run', '-config', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => {
    log += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    log += d.toString();
  });
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve();
    });
  });
  const socketPath = join(dir, 'api.sock');
  const address = `unix://${socketPath}`;
  const tail = () => log.split('\n').slice(-30).join('\n');

  const instance: SpireServerInstance = {
    trustDomain: opts.trustDomain,
    dir,
    socketPath,
    address,
    tcpPort,
    tcpAddress: `dns:///127.0.0.1:${tcpPort}`,
    ...(bundlePort === undefined
      ? {}
      : { bundleEndpointPort: bundlePort, bundleEndpointUrl: `https://127.0.0.1:${bundlePort}` }),
    pid: child.pid ?? -1,
    cli: (args, o) => runCli(bin, [...args, '-socketPath', socketPath], o?.stdin),
    async cliOk(args, o) {
      const r = await runCli(bin, [...args, '-socketPath', socketPath], o?.stdin);
      if (r.code !== 0) {
        throw new Error(`spire-server ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
      }
      return r.stdout;
    },
    bundleShow: () => instance.cliOk(['bundle', 'show', '-format', 'spiffe']),
    async bundleSet(td, json) {
      await instance.cliOk(['bundle', 'set', '-format', 'spiffe', '-id', `spiffe://${td}`], { stdin: json });
    },
    bundleList: () => instance.cliOk(['bundle', 'list', '-format', 'spiffe', '-output', 'json']),
    async prepareAuthority(kind) {
      const out = await instance.cliOk(['localauthority', kind, 'prepare', '-output', 'json']);
      const id = (JSON.parse(out) as { prepared_authority?: { authority_id?: string } }).prepared_authority
        ?.authority_id;
      if (!id) throw new Error(`localauthority ${kind} prepare printed no authority_id: ${out}`);
      return id;
    },
    async activateAuthority(kind, authorityId) {
      await instance.cliOk(['localauthority', kind, 'activate', '-authorityID', authorityId]);
    },
    async x509Mint(spiffeId, ttl = '1h') {
      const out = mkdtempSync(join(dir, 'mint-'));
      await instance.cliOk(['x509', 'mint', '-spiffeID', spiffeId, '-ttl', ttl, '-write', out]);
      const files = {
        certChainPem: readFileSync(join(out, 'svid.pem'), 'utf8'),
        privateKeyPem: readFileSync(join(out, 'key.pem'), 'utf8'),
        bundlePem: readFileSync(join(out, 'bundle.pem'), 'utf8'),
      };
      rmSync(out, { recursive: true, force: true });
      return files;
    },
    logs: () => log,
    async stop(timeoutMs = 10_000) {
      running.delete(instance);
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => {
          if (!exited) child.kill('SIGKILL');
        }, timeoutMs);
        await exitPromise;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  running.add(instance);

  // Readiness: gRPC health on the socket (SERVING once the own bundle is stored).
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  const client = new SpireServerClient({ address, timeoutMs: 2000, retry: { maxAttempts: 1 } });
  try {
    for (;;) {
      if (exited) {
        throw new Error(
          `spire-server for ${opts.trustDomain} exited early (code ${exited.code}, signal ${exited.signal}):\n${tail()}`,
        );
      }
      if (existsSync(socketPath)) {
        const ok = await client.healthCheck().then(
          (s) => s === 'SERVING',
          () => false,
        );
        if (ok) break;
      }
      if (Date.now() > deadline) {
        throw new Error(`spire-server for ${opts.trustDomain} not healthy in time:\n${tail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await instance.stop(2000);
    throw err;
  } finally {
    client.close();
  }
  return instance;
}

/** Stops every instance started by this process that is still running. */
export async function stopAllSpireServers(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}
