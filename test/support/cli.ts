import { readFile } from 'node:fs/promises';
import { runCli } from '../../src/cli/index.js';
import type { CliIo } from '../../src/cli/io.js';

/** Runs the CLI in-process with captured output; files are read from `files` first, then disk. */
export async function runCliCapture(
  argv: string[],
  opts: { files?: Record<string, string | Uint8Array>; now?: number; io?: Partial<CliIo> } = {},
): Promise<{ code: number; stdout: string; stderr: string; json: () => Record<string, unknown> }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    readFile: async (p) => {
      const f = opts.files?.[p];
      if (f !== undefined) return typeof f === 'string' ? new TextEncoder().encode(f) : f;
      return new Uint8Array(await readFile(p));
    },
    now: () => opts.now ?? Date.now(),
    env: {},
    signal: new AbortController().signal,
    ...opts.io,
  };
  const code = await runCli(argv, io);
  return { code, stdout, stderr, json: () => JSON.parse(stdout) as Record<string, unknown> };
}
