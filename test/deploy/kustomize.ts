/**
 * Renders kustomizations with a real kustomize: `$SPIFFE_BROKER_CACHE/bin/kustomize` (built from
 * the Go module proxy by scripts/install-kustomize.sh, which is run here when Go is available),
 * else `kubectl kustomize`. Without either the suites skip loudly — except under CI=true.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface KubeDoc {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [k: string]: unknown;
}

type Renderer = (dir: string) => string;

let cached: Renderer | null | undefined;

function ok(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore', timeout: 60_000 }).status === 0;
}

/** A kustomize renderer, or undefined (after a loud warning) when none can be had. */
export function kustomizeRenderer(): Renderer | undefined {
  if (cached !== undefined) return cached ?? undefined;
  const bin = join(
    process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker'),
    'bin',
    'kustomize',
  );
  if (!existsSync(bin) && ok('go', ['version'])) {
    // Builds from the Go module proxy (about 15 s cold, cached afterwards).
    spawnSync('bash', ['scripts/install-kustomize.sh'], { stdio: 'inherit', timeout: 600_000 });
  }
  if (existsSync(bin) && ok(bin, ['version'])) {
    cached = (dir) => execFileSync(bin, ['build', dir], { encoding: 'utf8', maxBuffer: 32 * 1024 * 1024 });
  } else if (ok('kubectl', ['kustomize', '--help'])) {
    cached = (dir) =>
      execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 32 * 1024 * 1024 });
  } else {
    cached = null;
    const msg = 'no kustomize (scripts/install-kustomize.sh needs Go) and no kubectl kustomize';
    if (process.env.CI === 'true') throw new Error(`${msg} — CI must render the manifests`);
    console.warn(`\n*** SKIPPING manifest rendering tests: ${msg} ***\n`);
  }
  return cached ?? undefined;
}

/** Renders `dir` and parses every document. */
export function render(dir: string): KubeDoc[] {
  const r = kustomizeRenderer();
  if (!r) throw new Error('no kustomize renderer');
  return parseAllDocuments(r(dir))
    .map((d) => d.toJSON() as KubeDoc | null)
    .filter((d): d is KubeDoc => d !== null);
}
