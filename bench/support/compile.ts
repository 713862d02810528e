/**
 * Transpiles the broker (src/) and child-process scripts (bench/support/, test/crash/) to plain
 * JavaScript with esbuild, file by file, keeping the layout — what `tsc -p tsconfig.build.json`
 * does for dist/ — so a benchmark measures the broker as it runs in production: plain `node`, no
 * TypeScript loader in the process (tsx alone adds ~35 MiB RSS and ~0.5 s of start-up CPU).
 *
 * Output: node_modules/.cache/spiffe-broker-bench/<pid>/ (bare imports resolve through the
 * repository's node_modules; proto/ is linked beside src/ as in the package). Directories of
 * processes that are gone are removed.
 * @module
 */
import { mkdir, readdir, rm, symlink } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CACHE = join(ROOT, 'node_modules', '.cache', 'spiffe-broker-bench');
/** Where this process's JavaScript goes. */
export const COMPILED_DIR = join(CACHE, String(process.pid));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await tsFiles(p)));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const compiledDirs = new Map<string, Promise<void>>();

/** Compiles every .ts file under `dir` (relative to the repository root) once per process. */
function compileDir(dir: string): Promise<void> {
  let done = compiledDirs.get(dir);
  if (!done) {
    done = (async () => {
      await build({
        entryPoints: await tsFiles(join(ROOT, dir)),
        outbase: ROOT,
        outdir: COMPILED_DIR,
        format: 'esm',
        platform: 'node',
        target: 'node20',
        bundle: false,
        sourcemap: false,
        logLevel: 'error',
      });
    })();
    compiledDirs.set(dir, done);
  }
  return done;
}

let prepared: Promise<void> | undefined;

/**
 * Returns the path of the compiled counterpart of `tsPath`, compiling src/ and the file's own
 * directory first (once per process each).
 */
export async function compiledPath(tsPath: string): Promise<string> {
  prepared ??= (async () => {
    await mkdir(CACHE, { recursive: true });
    for (const name of await readdir(CACHE)) {
      if (!/^\d+$/.test(name) || !alive(Number(name)))
        await rm(join(CACHE, name), { recursive: true, force: true });
    }
    await rm(COMPILED_DIR, { recursive: true, force: true });
    await mkdir(COMPILED_DIR, { recursive: true });
    await symlink(join(ROOT, 'proto'), join(COMPILED_DIR, 'proto'));
  })();
  await prepared;
  const rel = relative(ROOT, tsPath);
  await Promise.all([compileDir('src'), compileDir(dirname(rel))]);
  return join(COMPILED_DIR, rel.replace(/\.ts$/, '.js'));
}
