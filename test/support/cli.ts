import { readFile } from 'node:fs/promises';
import { runCli } from '../../src/cli/index.js';
import type { CliIo } from '../../src/cli/io.js';

/** What {@link runCommandCapture} and {@link runCliCapture} return. */
export interface Captured {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  json(): Record<string, unknown>;
}

/** Options of the capture helpers. */
export interface CaptureOptions {
  /** Files served to the command by path (checked before the disk). */
  readonly files?: Record<string, string | Uint8Array>;
  /** Read files absent from `files` from disk (default true); false: ENOENT. */
  readonly disk?: boolean;
  /** The injected clock, ms. Default the real time. */
  readonly now?: number;
  /** Overrides of individual I/O members. */
  readonly io?: Partial<CliIo>;
}

/** Runs one CLI command function in-process with captured output and injected files and time. */
export async function runCommandCapture(
  command: (args: string[], io: CliIo) => Promise<number>,
  args: string[],
  opts: CaptureOptions = {},
): Promise<Captured> {
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
      if (opts.disk === false) throw new Error(`ENOENT: no such file or directory, open '${p}'`);
      return new Uint8Array(await readFile(p));
    },
    now: () => opts.now ?? Date.now(),
    env: {},
    signal: new AbortController().signal,
    ...opts.io,
  };
  const code = await command(args, {
    ...io,
    // Keep capturing even when a test watches stdout itself.
    stdout: (t) => {
      stdout += t;
      opts.io?.stdout?.(t);
    },
  });
  return { code, stdout, stderr, json: () => JSON.parse(stdout) as Record<string, unknown> };
}

/** Runs the whole CLI (`spiffe-broker <argv>`) in-process; see {@link runCommandCapture}. */
export function runCliCapture(argv: string[], opts: CaptureOptions = {}): Promise<Captured> {
  return runCommandCapture((a, io) => runCli(a, io), argv, opts);
}
