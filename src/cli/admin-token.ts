import { join } from 'node:path';
import { ADMIN_TOKEN_FILE, parseAdminToken } from '../adapters/admin/token.js';
import { parseBrokerConfig } from '../engine/config/broker-config.js';
import { ApiError } from '../errors.js';
import type { CliIo } from './io.js';
import { UsageError } from './output.js';

/** The options by which a mutating admin command finds the admin token. */
export const ADMIN_TOKEN_OPTIONS = {
  'token-file': { type: 'string' },
  'state-dir': { type: 'string' },
  config: { type: 'string', short: 'c' },
} as const;

/** The usage lines of {@link ADMIN_TOKEN_OPTIONS}. */
export const ADMIN_TOKEN_USAGE = `  --token-file <path> the admin token file (default $SPIFFE_BROKER_ADMIN_TOKEN_FILE)
  --state-dir <dir>   the broker's state directory: reads <dir>/${ADMIN_TOKEN_FILE}
  --config <file>     the broker config: reads ${ADMIN_TOKEN_FILE} in its stateDir`;

/** The parsed values of {@link ADMIN_TOKEN_OPTIONS}. */
export interface AdminTokenArgs {
  readonly 'token-file'?: string | undefined;
  readonly 'state-dir'?: string | undefined;
  readonly config?: string | undefined;
}

/**
 * The admin token for a mutating admin request: from `--token-file`, `<--state-dir>/admin.token`,
 * the `stateDir` of `--config`, or `$SPIFFE_BROKER_ADMIN_TOKEN_FILE`; undefined when none is given
 * (the broker then answers 401 `ERR_API_UNAUTHORIZED`, whose message names these options).
 * @throws UsageError for conflicting options; ApiError `ERR_API_TOKEN` when the file named cannot
 *   be read or holds no token.
 */
export async function adminTokenFromArgs(
  values: AdminTokenArgs,
  io: Pick<CliIo, 'readFile' | 'env'>,
): Promise<string | undefined> {
  const given = (['token-file', 'state-dir', 'config'] as const).filter((k) => values[k] !== undefined);
  if (given.length > 1) throw new UsageError(`give one of --${given.join(', --')}, not several`);
  let path: string | undefined;
  if (values['token-file'] !== undefined) path = values['token-file'];
  else if (values['state-dir'] !== undefined) path = join(values['state-dir'], ADMIN_TOKEN_FILE);
  else if (values.config !== undefined) {
    const text = await read(io, values.config, 'broker config');
    let stateDir: string;
    try {
      stateDir = parseBrokerConfig(text).stateDir;
    } catch (err) {
      throw new UsageError(`--config ${values.config}: ${(err as Error).message}`);
    }
    path = join(stateDir, ADMIN_TOKEN_FILE);
  } else path = io.env.SPIFFE_BROKER_ADMIN_TOKEN_FILE || undefined;
  if (path === undefined) return undefined;
  return parseAdminToken(await read(io, path, 'admin token'), path);
}

async function read(io: Pick<CliIo, 'readFile'>, path: string, what: string): Promise<string> {
  try {
    return new TextDecoder().decode(await io.readFile(path));
  } catch (cause) {
    throw new ApiError('ERR_API_TOKEN', `cannot read the ${what} ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
}
