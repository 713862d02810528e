import { readFile } from 'node:fs/promises';

/** Everything a CLI command touches outside itself, injected so commands are testable. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly readFile: (path: string) => Promise<Uint8Array>;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM); used by long-running commands. */
  readonly signal: AbortSignal;
}

/** The real process's I/O. Only src/cli/main.ts calls this. */
export function processIo(signal: AbortSignal): CliIo {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    readFile: async (p) => new Uint8Array(await readFile(p)),
    now: () => Date.now(),
    env: process.env,
    signal,
  };
}

/** Exit codes shared by every command. */
export const EXIT_OK = 0;
/** The input was processed and refused (bad bundle, failed verification, broken audit chain). */
export const EXIT_REFUSED = 1;
/** The command line itself was wrong. */
export const EXIT_USAGE = 2;
