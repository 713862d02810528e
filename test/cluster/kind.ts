/**
 * kind helpers for the cluster suite (test/cluster/*.test.ts): one real Kubernetes v1.36.3 cluster
 * per suite, on the offline node image (scripts/kind/node-image.sh), driven with the kind and
 * kubectl binaries that script builds. Each suite names its cluster with a random suffix and
 * deletes only that cluster.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { docker } from '../container/docker.js';

const CACHE = process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
export const KIND_BIN = join(CACHE, 'kind', 'bin');
export const NODE_IMAGE = process.env.KIND_NODE_IMAGE ?? 'spiffe-broker/kind-node:v1.36.3';
export const REPO = join(import.meta.dirname, '..', '..');

/** Result of one command. */
export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a binary of KIND_BIN (kind, kubectl); never throws on a non-zero exit. */
export function run(
  bin: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(
      join(KIND_BIN, bin),
      [...args],
      {
        timeout: opts.timeoutMs ?? 120_000,
        maxBuffer: 64 << 20,
        env: { ...process.env, PATH: `${KIND_BIN}:${process.env.PATH ?? ''}`, ...opts.env },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(opts.input);
  });
}

async function unavailableReason(images: readonly string[]): Promise<string | undefined> {
  const v = await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 15_000 });
  if (v.code !== 0) return 'no docker daemon answers; run scripts/ci-containers.sh';
  for (const image of [NODE_IMAGE, ...images]) {
    const i = await docker(['image', 'inspect', '--format', '{{.Id}}', image]);
    if (i.code !== 0)
      return `image ${image} is missing; run scripts/ci-cluster.sh (or scripts/ci-containers.sh)`;
  }
  for (const bin of ['kind', 'kubectl']) {
    const r = await run(bin, ['version', ...(bin === 'kubectl' ? ['--client'] : [])]);
    if (r.code !== 0) return `${join(KIND_BIN, bin)} does not run; run scripts/kind/node-image.sh`;
  }
  return undefined;
}

/**
 * For `describe.skipIf(!(await clusterOrSkip('suite', images)))`: true when docker, the node image,
 * the images and the binaries are there. Otherwise a loud warning and false — or, with CI=true, a
 * throw, so the suite fails instead of silently skipping.
 */
export async function clusterOrSkip(suite: string, images: readonly string[]): Promise<boolean> {
  const reason = await unavailableReason(images);
  if (reason === undefined) return true;
  const message = `kind cluster unavailable for "${suite}": ${reason}`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead of skipping)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPING ${message}\n${'!'.repeat(100)}\n`);
  return false;
}

/** One kind cluster with its own kubeconfig file. */
export class KindCluster {
  readonly name: string;
  readonly #dir: string;
  readonly kubeconfig: string;

  private constructor(name: string) {
    this.name = name;
    this.#dir = mkdtempSync(join(tmpdir(), `${name}-`));
    this.kubeconfig = join(this.#dir, 'kubeconfig');
  }

  /** Creates `<prefix>-<random>` on the offline node image with deploy/kind/cluster-offline.yaml. */
  static async create(prefix: string): Promise<KindCluster> {
    const c = new KindCluster(`${prefix}-${randomBytes(3).toString('hex')}`);
    const r = await run(
      'kind',
      [
        'create',
        'cluster',
        '--name',
        c.name,
        '--image',
        NODE_IMAGE,
        '--config',
        join(REPO, 'deploy', 'kind', 'cluster-offline.yaml'),
        '--kubeconfig',
        c.kubeconfig,
        '--wait',
        '180s',
      ],
      { timeoutMs: 300_000 },
    );
    if (r.code !== 0) {
      await c.delete();
      throw new Error(`kind create cluster ${c.name} failed:\n${r.stderr.slice(-4000)}`);
    }
    return c;
  }

  /** The node container's name (one node). */
  get node(): string {
    return `${this.name}-control-plane`;
  }

  /** `kind load docker-image` (images from the local docker, never pulled). */
  async load(images: readonly string[]): Promise<void> {
    const r = await run('kind', ['load', 'docker-image', ...images, '--name', this.name], {
      timeoutMs: 300_000,
    });
    if (r.code !== 0) throw new Error(`kind load failed: ${r.stderr}`);
  }

  /** kubectl against this cluster; never throws on a non-zero exit. */
  kubectl(args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return run('kubectl', ['--kubeconfig', this.kubeconfig, ...args], opts);
  }

  /** Like {@link kubectl}, but throws with the output on a non-zero exit; returns stdout. */
  async kubectlOk(
    args: readonly string[],
    opts: { input?: string; timeoutMs?: number } = {},
  ): Promise<string> {
    const r = await this.kubectl(args, opts);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  /** `kubectl get -o json` parsed. */
  async json<T = Record<string, unknown>>(args: readonly string[]): Promise<T> {
    return JSON.parse(await this.kubectlOk(['get', ...args, '-o', 'json'])) as T;
  }

  /**
   * Follows a pod's log until the pod's container exits (kubectl logs -f); resolves with the text.
   * For reading what a pod printed while it was being deleted.
   */
  followLogs(namespace: string, pod: string): Promise<string> {
    return new Promise((resolve) => {
      const child = spawn(join(KIND_BIN, 'kubectl'), [
        '--kubeconfig',
        this.kubeconfig,
        '-n',
        namespace,
        'logs',
        '-f',
        pod,
      ]);
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.on('close', () => resolve(out));
    });
  }

  /** Deletes the cluster and its kubeconfig. */
  async delete(): Promise<void> {
    await run('kind', ['delete', 'cluster', '--name', this.name], { timeoutMs: 120_000 });
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
