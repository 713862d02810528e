import { BrokerError, RuntimeError } from '../errors.js';
import { type CliIo, EXIT_REFUSED, EXIT_USAGE } from './io.js';

/** A command-line mistake: printed with the command's usage, exit code 2. */
export class UsageError extends RuntimeError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/** Writes one JSON document and a newline. bigint values are written as decimal strings. */
export function printJson(io: CliIo, value: unknown): void {
  io.stdout(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

/**
 * Reports a failure the way every command does: `{"ok":false,"code","message"}` with `--json`,
 * else one readable line on stderr — never a stack trace for bad input. Returns the exit code.
 */
export function reportFailure(io: CliIo, json: boolean, err: unknown, usage?: string): number {
  const usageError = err instanceof UsageError;
  if (err instanceof BrokerError) {
    if (json) printJson(io, { ok: false, code: err.code, message: err.message });
    else io.stderr(`error: ${err.message} (${err.code})\n${usageError && usage ? `\n${usage}\n` : ''}`);
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
