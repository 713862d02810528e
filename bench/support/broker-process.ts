/**
 * Parent side of bench/support/broker-child.ts: forks a broker from a config file and asks it for
 * its figures over IPC.
 * @module
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BrokerChildStats } from './broker-child.js';
import { compiledPath } from './compile.js';
import { createWebServerCert, type WebServerCert } from './web-cert.js';

const CHILD = fileURLToPath(new URL('./broker-child.ts', import.meta.url));

/** A broker running in a child process. */
export class BrokerProcess {
  readonly child: ChildProcess;
  /** Wall-clock ms (Date.now in the child) right before `daemon.run()`. */
  readonly running: Promise<number>;
  /** The bundle endpoint's and the verify API's URLs once they listen. */
  readonly urls: Promise<{ endpoint?: string; verify?: string }>;
  /** Settles when the child exits; rejects if the daemon failed. */
  readonly exited: Promise<void>;
  #stderr = '';
  #waiting: ((s: BrokerChildStats) => void)[] = [];
  readonly #published = new Set<(p: { at: number; sequence: string }) => void>();
  readonly #released = new Set<(ms: number) => void>();

  private constructor(
    script: string,
    execArgv: string[],
    configPath: string,
    env: NodeJS.ProcessEnv,
    fdLimit: number | undefined,
  ) {
    // BROKER_CHILD_NODE_ARGS: extra node flags for the child, e.g. `--cpu-prof` when profiling.
    const nodeArgs = [...execArgv, ...(process.env.BROKER_CHILD_NODE_ARGS?.split(' ').filter(Boolean) ?? [])];
    this.child =
      fdLimit === undefined
        ? fork(script, [configPath], { execArgv: nodeArgs, stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env })
        : // Through bash to raise the open-files limit first; the IPC channel survives the exec.
          spawn(
            'bash',
            [
              '-c',
              // BROKER_CHILD_STDOUT=<file>: the child's stdout (e.g. --trace-gc) appended to a file.
              `ulimit -n ${fdLimit} && exec "$0" "$@"${process.env.BROKER_CHILD_STDOUT ? ' >>"$BROKER_CHILD_STDOUT"' : ''}`,
              process.execPath,
              ...nodeArgs,
              script,
              configPath,
            ],
            {
              stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
              env,
            },
          );
    this.child.on('message', (m: { type: string; at?: number; sequence?: string }) => {
      if (m.type === 'published') for (const f of this.#published) f({ at: m.at!, sequence: m.sequence! });
      if (m.type === 'released') for (const f of this.#released) f((m as unknown as { ms: number }).ms);
    });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-8000);
    });
    let onRunning: (at: number) => void = () => undefined;
    this.running = new Promise((r) => {
      onRunning = r;
    });
    let onUrls: (u: { endpoint?: string; verify?: string }) => void = () => undefined;
    this.urls = new Promise((r) => {
      onUrls = r;
    });
    let failure: string | undefined;
    this.child.on('message', (m: { type: string; at?: number; error?: string }) => {
      if (m.type === 'running') onRunning(m.at!);
      else if (m.type === 'urls') onUrls(m as { endpoint?: string; verify?: string });
      else if (m.type === 'stats') this.#waiting.shift()?.(m as BrokerChildStats);
      else if (m.type === 'exit' && m.error) failure = m.error;
    });
    this.exited = new Promise((resolve, reject) => {
      this.child.on('exit', (code, signal) => {
        if (failure || (code !== 0 && signal !== 'SIGKILL' && signal !== 'SIGTERM'))
          reject(new Error(`broker child exited ${code ?? signal}: ${failure ?? this.#stderr}`));
        else resolve();
      });
    });
    this.exited.catch(() => undefined);
  }

  /**
   * Forks the broker. By default it runs as compiled JavaScript on plain node, as in production
   * (bench/support/compile.ts); `typescript: true` runs the sources through tsx instead.
   */
  static async start(
    configPath: string,
    opts: {
      typescript?: boolean;
      env?: NodeJS.ProcessEnv;
      fdLimit?: number;
      nodeArgs?: readonly string[];
    } = {},
  ): Promise<BrokerProcess> {
    const env = opts.env ?? process.env;
    const nodeArgs = [...(opts.nodeArgs ?? [])];
    if (opts.typescript)
      return new BrokerProcess(CHILD, ['--import', 'tsx', ...nodeArgs], configPath, env, opts.fdLimit);
    return new BrokerProcess(await compiledPath(CHILD), nodeArgs, configPath, env, opts.fdLimit);
  }

  /**
   * Resolves with the next local bundle the broker publishes (when, in
   * `performance.timeOrigin + performance.now()` ms, and its sequence).
   */
  nextPublished(): Promise<{ at: number; sequence: string }> {
    return new Promise((resolve) => {
      const f = (p: { at: number; sequence: string }): void => {
        this.#published.delete(f);
        resolve(p);
      };
      this.#published.add(f);
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  stderr(): string {
    return this.#stderr;
  }

  /** The child's figures now (rejects after 10 s without an answer). */
  stats(): Promise<BrokerChildStats> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`broker child gave no stats: ${this.#stderr}`)),
        10_000,
      );
      this.#waiting.push((s) => {
        clearTimeout(timer);
        resolve(s);
      });
      this.child.send({ type: 'stats' });
    });
  }

  /** process.memoryUsage() of the child (after a GC when it runs with --expose-gc). */
  memory(): Promise<NodeJS.MemoryUsage> {
    return new Promise((resolve) => {
      const on = (m: { type: string; usage?: NodeJS.MemoryUsage }): void => {
        if (m.type !== 'memory') return;
        this.child.off('message', on);
        resolve(m.usage!);
      };
      this.child.on('message', on);
      this.child.send({ type: 'memory' });
    });
  }

  /** Resolves with how long the next release of held requests kept the broker busy, ms. */
  nextReleased(): Promise<number> {
    return new Promise((resolve) => {
      const f = (ms: number): void => {
        this.#released.delete(f);
        resolve(ms);
      };
      this.#released.add(f);
    });
  }

  refreshAll(): void {
    this.child.send({ type: 'refresh' });
  }

  /** Asks the daemon to stop (then SIGKILL after 10 s) and waits for the exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    if (this.child.connected) this.child.send({ type: 'stop' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited.catch(() => undefined);
    clearTimeout(timer);
  }
}

/** Resident set size of a process, bytes, from /proc (Linux); 0 when unreadable. */
export function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Samples a process's RSS every `everyMs` from /proc (no IPC, so the measured process does no
 * extra work) and keeps the peak until stopped.
 */
export function rssSampler(pid: number, everyMs = 250): { peak(): number; last(): number; stop(): void } {
  let peak = 0;
  let last = 0;
  const sample = (): void => {
    last = rssOf(pid);
    peak = Math.max(peak, last);
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    peak: () => peak,
    last: () => last,
    stop: () => clearInterval(timer),
  };
}

/**
 * Writes the configuration of a broker with one SPIRE server, an empty allowlist and an https_web
 * bundle endpoint (certificate files from `web`) into `dir`, and returns the config file's path.
 */
export async function writeWebEndpointBrokerConfig(
  dir: string,
  o: {
    readonly trustDomain: string;
    readonly spireAddress: string;
    readonly web: { readonly certPem: string; readonly keyPem: string };
    readonly maxHeldRequests?: number;
  },
): Promise<string> {
  const { writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  await writeFile(join(dir, 'ep.crt'), o.web.certPem);
  await writeFile(join(dir, 'ep.key'), o.web.keyPem);
  await writeFile(
    join(dir, 'allowlist.yaml'),
    'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n',
  );
  const configFile = join(dir, 'broker.yaml');
  await writeFile(
    configFile,
    [
      'apiVersion: spiffe-broker.dev/v1',
      'kind: BrokerConfig',
      `trustDomain: ${o.trustDomain}`,
      `stateDir: ${join(dir, 'state')}`,
      'spire:',
      '  servers:',
      `    - { name: spire, address: "${o.spireAddress}" }`,
      `allowlist: { file: ${join(dir, 'allowlist.yaml')} }`,
      'endpoint:',
      '  listen: 127.0.0.1:0',
      '  profile: https_web',
      `  certFile: ${join(dir, 'ep.crt')}`,
      `  keyFile: ${join(dir, 'ep.key')}`,
      ...(o.maxHeldRequests !== undefined ? [`  maxHeldRequests: ${o.maxHeldRequests}`] : []),
      // Every bench client comes from 127.0.0.1: the per-address connection cap (a defence against
      // one host hogging the endpoint) must admit them all, as many peers' addresses would.
      ...(o.maxHeldRequests !== undefined ? [`  maxConnectionsPerAddress: ${o.maxHeldRequests + 100}`] : []),
      'admin: { listen: 127.0.0.1:0 }',
      'verify: { listen: 127.0.0.1:0 }',
      '',
    ].join('\n'),
  );
  return configFile;
}

/** The broker's listener URLs once it listens; rejects when it exits first. */
export function listening(broker: BrokerProcess): Promise<{ endpoint?: string; verify?: string }> {
  return Promise.race([
    broker.urls,
    broker.exited.then(() => {
      throw new Error('broker exited before listening');
    }),
  ]);
}

/**
 * A broker in its own process publishing `trustDomain`, read from the SPIRE server at
 * `spireAddress`, on an https_web bundle endpoint with a fresh web certificate (empty allowlist);
 * resolves once it listens. A broker that exits first is stopped and the error thrown.
 */
export async function startWebEndpointBroker(
  dir: string,
  o: {
    readonly trustDomain: string;
    readonly spireAddress: string;
    readonly maxHeldRequests?: number;
    readonly fdLimit?: number;
  },
): Promise<{ broker: BrokerProcess; urls: { endpoint?: string; verify?: string }; web: WebServerCert }> {
  const web = await createWebServerCert();
  const configFile = await writeWebEndpointBrokerConfig(dir, {
    trustDomain: o.trustDomain,
    spireAddress: o.spireAddress,
    web,
    ...(o.maxHeldRequests !== undefined ? { maxHeldRequests: o.maxHeldRequests } : {}),
  });
  const broker = await BrokerProcess.start(configFile, o.fdLimit !== undefined ? { fdLimit: o.fdLimit } : {});
  try {
    return { broker, urls: await listening(broker), web };
  } catch (err) {
    await broker.stop();
    throw err;
  }
}
