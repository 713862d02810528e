/**
 * Docker helpers for the container suite (test/container/*.test.ts): run the docker CLI, decide
 * whether the suite can run, and remove everything a suite created (containers, volumes,
 * networks — all named with the suite's random prefix, nothing else is touched).
 *
 * The images come from scripts/ci-containers.sh (or scripts/docker-build.sh): the product image
 * $SPIFFE_BROKER_IMAGE (default spiffe-broker:dev), the test-only SPIRE image $SPIRE_SERVER_IMAGE
 * (default spiffe-broker/spire-server:1.15.3) and the base it was built on (the image's
 * dev.spiffe-broker.node-image label).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const PRODUCT_IMAGE = process.env.SPIFFE_BROKER_IMAGE ?? 'spiffe-broker:dev';
export const SPIRE_IMAGE = process.env.SPIRE_SERVER_IMAGE ?? 'spiffe-broker/spire-server:1.15.3';
/** The product image's non-root user and SPIRE's, as the Dockerfiles set them. */
export const BROKER_UID = 65532;
export const SPIRE_UID = 65533;

/** Result of one docker command. */
export interface DockerResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `docker <args>`; never throws on a non-zero exit. */
export function docker(
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<DockerResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'docker',
      [...args],
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(opts.input);
  });
}

/** Like {@link docker}, but throws with the output on a non-zero exit; returns stdout. */
export async function dockerOk(
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const r = await docker(args, opts);
  if (r.code !== 0) {
    throw new Error(`docker ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r.stdout;
}

async function unavailableReason(images: readonly string[]): Promise<string | undefined> {
  const v = await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 15_000 });
  if (v.code !== 0) {
    return `no docker daemon answers (${(v.stderr || v.stdout).trim().split('\n')[0]}); run scripts/ci-containers.sh`;
  }
  for (const image of images) {
    const i = await docker(['image', 'inspect', '--format', '{{.Id}}', image]);
    if (i.code !== 0) return `image ${image} is missing; run scripts/ci-containers.sh`;
  }
  return undefined;
}

/**
 * For `describe.skipIf(!(await dockerOrSkip('suite', images)))`: true when docker answers and the
 * images exist. Otherwise prints a loud warning and returns false — or, with CI=true, throws, so
 * the suite fails instead of silently skipping.
 */
export async function dockerOrSkip(suite: string, images: readonly string[]): Promise<boolean> {
  const reason = await unavailableReason(images);
  if (reason === undefined) return true;
  const message = `containers unavailable for "${suite}": ${reason}`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead of skipping)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPING ${message}\n${'!'.repeat(100)}\n`);
  return false;
}

/** Names and cleans up what one suite creates. */
export class DockerScope {
  readonly prefix = `sbct-${randomBytes(3).toString('hex')}`;
  readonly #containers: string[] = [];
  readonly #volumes: string[] = [];
  readonly #networks: string[] = [];

  /** A container name under this scope, removed by {@link cleanup}. */
  container(name: string): string {
    const full = `${this.prefix}-${name}`;
    this.#containers.push(full);
    return full;
  }

  /** Creates a named volume under this scope. */
  async volume(name: string): Promise<string> {
    const full = `${this.prefix}-${name}`;
    this.#volumes.push(full);
    await dockerOk(['volume', 'create', '--label', `dev.spiffe-broker.test=${this.prefix}`, full]);
    return full;
  }

  /** Creates a user-defined bridge network under this scope (containers resolve each other by name). */
  async network(name: string): Promise<string> {
    const full = `${this.prefix}-${name}`;
    this.#networks.push(full);
    await dockerOk(['network', 'create', '--label', `dev.spiffe-broker.test=${this.prefix}`, full]);
    return full;
  }

  /** Removes this scope's containers, then volumes and networks. */
  async cleanup(): Promise<void> {
    if (this.#containers.length > 0) await docker(['rm', '-f', '-v', ...this.#containers]);
    if (this.#volumes.length > 0) await docker(['volume', 'rm', '-f', ...this.#volumes]);
    for (const n of this.#networks) await docker(['network', 'rm', n]);
  }
}

/** Polls `check` until it returns true; returns the elapsed ms or throws after `timeoutMs`. */
export async function until(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  intervalMs = 0,
): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await check()) return performance.now() - start;
    if (performance.now() - start > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    if (intervalMs > 0) await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A Node stack-trace line, which a coded error must never print. */
export const STACK_LINE = /^\s+at .+\(?.*:\d+:\d+\)?$/m;
