import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { SpireServerClient } from '../adapters/spire/client.js';
import type { TrustBundle } from '../core/bundle/trust-bundle.js';
import type { LabSpire } from './lab.js';

/** Result of one `spire-server` CLI command. */
export interface SpireCliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** What {@link startSpireServerProcess} takes. */
export interface SpireProcessOptions {
  readonly bin: string;
  readonly trustDomain: string;
  /** Directory for config, data and the API socket; keep it short (socket paths ≤ ~100 bytes). */
  readonly dir: string;
  /** SPIFFE IDs allowed on the TCP admin API (`admin_ids`). */
  readonly adminIds?: readonly string[];
  /** Also serve SPIRE's own bundle endpoint (https_spiffe) on a free port. */
  readonly bundleEndpoint?: boolean;
  /** `federation.bundle_endpoint.refresh_hint` (SPIRE's minimum is 1m). Default "1m". */
  readonly bundleEndpointRefreshHint?: string;
  readonly caTtl?: string;
  readonly defaultX509SvidTtl?: string;
  /**
   * `jwt_issuer`: the `iss` claim of every JWT-SVID the server mints (SPIRE sets none without it).
   * An OIDC relying party compares it with the discovery document's `issuer` (broker `oidc.issuer`).
   */
  readonly jwtIssuer?: string;
  readonly logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** Environment of the server process (e.g. SSL_CERT_FILE for https_web peers). */
  readonly env?: Readonly<Record<string, string>>;
  /** How long to wait for health, ms. Default 60 000. */
  readonly readyTimeoutMs?: number;
}

/** A running spire-server process. */
export interface SpireServerProcess {
  readonly trustDomain: string;
  readonly dir: string;
  readonly socketPath: string;
  /** `unix://<socketPath>` */
  readonly address: string;
  readonly tcpPort: number;
  /** `dns:///127.0.0.1:<tcpPort>` */
  readonly tcpAddress: string;
  readonly bundleEndpointPort?: number;
  readonly bundleEndpointUrl?: string;
  readonly pid: number;
  /** Runs `spire-server <args…> -socketPath <socket>`; never throws on a non-zero exit. */
  cli(args: readonly string[], opts?: { stdin?: string }): Promise<SpireCliResult>;
  /** Like {@link cli} but throws with the output on a non-zero exit. */
  cliOk(args: readonly string[], opts?: { stdin?: string }): Promise<string>;
  /** `localauthority <kind> prepare`: returns the new authority's ID. */
  prepareAuthority(kind: 'jwt' | 'x509'): Promise<string>;
  activateAuthority(kind: 'jwt' | 'x509', authorityId: string): Promise<void>;
  /** Everything the process wrote so far. */
  logs(): string;
  /** SIGTERM, then SIGKILL after `timeoutMs` (default 10 s). Leaves `dir` in place. */
  stop(timeoutMs?: number): Promise<void>;
}

/** A free TCP port on 127.0.0.1. */
/**
 * A free TCP port on 127.0.0.1 for a listener that must be named before it starts (a SPIRE
 * server's config, a peer's allowlist, an OIDC issuer). Picked at random below the kernel's
 * ephemeral range (32768-60999 on Linux) and test-bound: a port handed out of the ephemeral range
 * can be taken by any outgoing connection before the listener binds it — seen as an ERR_LISTEN
 * in a busy test run.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canBind(port)) return port;
  }
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

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

function runCli(bin: string, args: readonly string[], stdin: string | undefined): Promise<SpireCliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      bin,
      [...args],
      { timeout: 30_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
    child.stdin?.end(stdin);
  });
}

/** A minimal server.conf: sqlite datastore, in-memory key manager, API socket in `dir`. */
export function renderSpireServerConfig(
  o: SpireProcessOptions & { tcpPort: number; bundlePort?: number | undefined },
): string {
  const admin = (o.adminIds ?? []).map((id) => JSON.stringify(id)).join(', ');
  const federation =
    o.bundlePort === undefined
      ? ''
      : `
    federation {
        bundle_endpoint {
            address = "127.0.0.1"
            port = ${o.bundlePort}
            refresh_hint = "${o.bundleEndpointRefreshHint ?? '1m'}"
            profile "https_spiffe" {}
        }
    }`;
  return `server {
    trust_domain = "${o.trustDomain}"
    bind_address = "127.0.0.1"
    bind_port = "${o.tcpPort}"
    socket_path = "${o.dir}/api.sock"
    data_dir = "${o.dir}/data"
    log_level = "${o.logLevel ?? 'INFO'}"
    ca_key_type = "ec-p256"
    ca_ttl = "${o.caTtl ?? '24h'}"
    default_x509_svid_ttl = "${o.defaultX509SvidTtl ?? '1h'}"${o.jwtIssuer === undefined ? '' : `\n    jwt_issuer = ${JSON.stringify(o.jwtIssuer)}`}
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

/**
 * Starts `spire-server run` with a generated config and waits until its gRPC health check on the
 * API socket answers SERVING (its own bundle is stored).
 * @throws Error with the server's log tail when it exits early or is not healthy in time
 */
export async function startSpireServerProcess(opts: SpireProcessOptions): Promise<SpireServerProcess> {
  await mkdir(opts.dir, { recursive: true });
  const tcpPort = await freePort();
  const bundlePort = opts.bundleEndpoint ? await freePort() : undefined;
  const confPath = join(opts.dir, 'server.conf');
  await writeFile(confPath, renderSpireServerConfig({ ...opts, tcpPort, bundlePort }));
  const child: ChildProcess = spawn(opts.bin, ['run', '-config', confPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
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
  const socketPath = join(opts.dir, 'api.sock');
  const address = `unix://${socketPath}`;
  const tail = () => log.split('\n').slice(-30).join('\n');
  const cli = (args: readonly string[], o?: { stdin?: string }) =>
    runCli(opts.bin, [...args, '-socketPath', socketPath], o?.stdin);
  const proc: SpireServerProcess = {
    trustDomain: opts.trustDomain,
    dir: opts.dir,
    socketPath,
    address,
    tcpPort,
    tcpAddress: `dns:///127.0.0.1:${tcpPort}`,
    ...(bundlePort === undefined
      ? {}
      : { bundleEndpointPort: bundlePort, bundleEndpointUrl: `https://127.0.0.1:${bundlePort}` }),
    pid: child.pid ?? -1,
    cli,
    async cliOk(args, o) {
      const r = await cli(args, o);
      if (r.code !== 0)
        throw new Error(`spire-server ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
      return r.stdout;
    },
    async prepareAuthority(kind) {
      const out = await proc.cliOk(['localauthority', kind, 'prepare', '-output', 'json']);
      const id = (JSON.parse(out) as { prepared_authority?: { authority_id?: string } }).prepared_authority
        ?.authority_id;
      if (!id) throw new Error(`localauthority ${kind} prepare printed no authority_id: ${out}`);
      return id;
    },
    async activateAuthority(kind, authorityId) {
      await proc.cliOk(['localauthority', kind, 'activate', '-authorityID', authorityId]);
    },
    logs: () => log,
    async stop(timeoutMs = 10_000) {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!exited) child.kill('SIGKILL');
      }, timeoutMs);
      await exitPromise;
      clearTimeout(timer);
    },
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  const client = new SpireServerClient({ address, timeoutMs: 2000, retry: { maxAttempts: 1 } });
  try {
    for (;;) {
      if (exited) {
        throw new Error(
          `spire-server for ${opts.trustDomain} exited early (code ${exited.code}, signal ${exited.signal}):\n${tail()}`,
        );
      }
      if (
        existsSync(socketPath) &&
        (await client.healthCheck().then(
          (s) => s === 'SERVING',
          () => false,
        ))
      )
        break;
      if (Date.now() > deadline)
        throw new Error(`spire-server for ${opts.trustDomain} not healthy in time:\n${tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await proc.stop(2000);
    throw err;
  } finally {
    client.close();
  }
  return proc;
}

/** Starts lab trust domains on real spire-server processes. */
export interface SpireServerRunner {
  available(): Promise<boolean>;
  /** `opts.jwtIssuer`: the server's `jwt_issuer` (the lab broker's OIDC issuer). */
  start(trustDomain: string, dir: string, opts?: { readonly jwtIssuer?: string }): Promise<LabSpire>;
}

/** {@link SpireServerRunner} for a spire-server binary. */
export class RealSpireServer implements SpireServerRunner {
  constructor(readonly bin: string) {}

  async available(): Promise<boolean> {
    if (!existsSync(this.bin)) return false;
    const r = await runCli(this.bin, ['--version'], undefined);
    return r.code === 0 || /\d+\.\d+/.test(r.stdout + r.stderr);
  }

  async start(
    trustDomain: string,
    dir: string,
    opts: { readonly jwtIssuer?: string } = {},
  ): Promise<LabSpire> {
    const proc = await startSpireServerProcess({
      bin: this.bin,
      trustDomain,
      dir,
      ...(opts.jwtIssuer !== undefined ? { jwtIssuer: opts.jwtIssuer } : {}),
    });
    const client = new SpireServerClient({ address: proc.address });
    return {
      kind: 'real',
      address: proc.address,
      socketPath: proc.socketPath,
      bundle: () => client.getBundle(),
      async federatedBundles() {
        const out = new Map<string, TrustBundle>();
        for (const b of await client.listFederatedBundles()) out.set(b.trustDomain.name, b);
        return out;
      },
      rotateJwtAuthority: () => proc.prepareAuthority('jwt'),
      async stop() {
        client.close();
        await proc.stop();
      },
    };
  }
}
