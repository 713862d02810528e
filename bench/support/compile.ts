/**
 * Transpiles the broker (src/) and the benchmark children (bench/support/) to plain JavaScript with
 * esbuild, file by file, keeping the layout — what `tsc -p tsconfig.build.json` does for dist/ —
 * so a benchmark can measure the broker as it runs in production: plain `node`, no TypeScript
 * loader in the process (tsx alone adds ~35 MiB RSS and start-up CPU).
 *
 * Output: node_modules/.cache/spiffe-broker-bench/ (bare imports resolve through the repository's
 * node_modules; proto/ is linked beside src/ as in the package).
 * @module
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, symlink } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where the JavaScript goes. */
export const COMPILED_DIR = join(ROOT, 'node_modules', '.cache', 'spiffe-broker-bench');

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await tsFiles(p)));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

let compiled: Promise<string> | undefined;

/**
 * Compiles once per process; returns the path of the compiled counterpart of `tsPath` (a file
 * under src/ or bench/support/).
 */
export async function compiledPath(tsPath: string): Promise<string> {
  compiled ??= (async () => {
    await rm(COMPILED_DIR, { recursive: true, force: true });
    const entryPoints = [
      ...(await tsFiles(join(ROOT, 'src'))),
      ...(await tsFiles(join(ROOT, 'bench', 'support'))),
    ];
    await build({
      entryPoints,
      outbase: ROOT,
      outdir: COMPILED_DIR,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      bundle: false,
      sourcemap: false,
      logLevel: 'error',
    });
    await mkdir(COMPILED_DIR, { recursive: true });
    if (!existsSync(join(COMPILED_DIR, 'proto')))
      await symlink(join(ROOT, 'proto'), join(COMPILED_DIR, 'proto'));
    return COMPILED_DIR;
  })();
  const dir = await compiled;
  const rel = relative(ROOT, tsPath).replace(/\.ts$/, '.js');
  const out = join(dir, rel);
  await mkdir(dirname(out), { recursive: true });
  return out;
}
