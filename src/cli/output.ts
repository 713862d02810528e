import { BrokerError, RuntimeError } from '../errors.js';
import { type CliIo, EXIT_REFUSED, EXIT_USAGE } from './io.js';

/** A command-line mistake: printed with the command's usage, exit code 2. */
export class UsageError extends RuntimeError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/**
 * Characters a terminal may act on rather than print: C0 controls except tab and line feed (ESC
 * starts colour, cursor and title sequences; BEL, BS and CR rewrite what was shown), DEL, the C1
 * controls (U+009B is a one-byte CSI on some terminals) and the bidirectional overrides and isolates
 * that reorder a line as shown (U+202A–U+202E, U+2066–U+2069).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const TERMINAL_UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Makes text safe to write to a terminal: every character in {@link TERMINAL_UNSAFE} becomes its
 * `\uXXXX` escape. Peer-chosen strings (a JWT `kid`, a refusal message quoting one, a subject) reach
 * the CLI's output; raw they could recolour, retitle or rewrite the operator's terminal. The escape
 * is also a valid JSON string escape of the same character, so JSON output stays the same value.
 * @example
 * escapeTerminal('kid \u001b]0;pwned\u0007'); // 'kid \\u001b]0;pwned\\u0007'
 */
export function escapeTerminal(text: string): string {
  return text.replace(TERMINAL_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * The one place the CLI's output is made terminal-safe: `stdout` and `stderr` of the returned io
 * pass everything through {@link escapeTerminal}. {@link runCli} wraps every command's io with it.
 */
export function terminalSafeIo<T extends CliIo>(io: T): T {
  return {
    ...io,
    stdout: (t: string) => io.stdout(escapeTerminal(t)),
    stderr: (t: string) => io.stderr(escapeTerminal(t)),
  };
}

/** Writes one JSON document and a newline. bigint values are written as decimal strings. */
export function printJson(io: CliIo, value: unknown): void {
  io.stdout(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

/**
 * Reports a failure the way every command does: `{"ok":false,"code","message"}` with `--json`,
 * else one readable line on stderr — never a stack trace for bad input. Returns the exit code.
 *
 * @param hint what to try next, usually the flag that fixes the failure (`--admin`, `--ca`): a
 *   `hint: …` line after the error, `"hint"` in the JSON object.
 */
export function reportFailure(io: CliIo, json: boolean, err: unknown, usage?: string, hint?: string): number {
  const usageError = err instanceof UsageError;
  if (err instanceof BrokerError) {
    if (json) printJson(io, { ok: false, code: err.code, message: err.message, ...(hint ? { hint } : {}) });
    else {
      io.stderr(
        `error: ${err.message} (${err.code})\n${hint ? `hint: ${hint}\n` : ''}${usageError && usage ? `\n${usage}\n` : ''}`,
      );
    }
    return usageError ? EXIT_USAGE : EXIT_REFUSED;
  }
  // Anything else is a bug or an environment failure; still no stack unless asked for.
  const message = err instanceof Error ? err.message : String(err);
  if (json) printJson(io, { ok: false, code: 'ERR_IO', message });
  else io.stderr(`error: ${message}\n`);
  return EXIT_USAGE;
}

/** Reads a file named on the command line; a missing or unreadable file is a usage error. */
export async function readInput(io: CliIo, path: string, what: string): Promise<Uint8Array> {
  try {
    return await io.readFile(path);
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
}
