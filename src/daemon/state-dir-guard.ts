import { ensureAdminToken } from '../adapters/admin/token.js';
import type { Logger } from '../platform/logger.js';
import {
  lockStateDir,
  PRIVATE_FILE_FORBIDDEN,
  STATE_DIR_FORBIDDEN,
  type StateDirLock,
  securePath,
} from '../platform/state-dir.js';

/**
 * Takes the state directory before anything in it is read or written: refuses or fixes one that
 * others can write, takes its exclusive lock (two brokers never share it), refuses or fixes an
 * audit key others can read, and makes (or reads) the admin API token in it.
 * @throws RuntimeError `ERR_STATE_PERMISSIONS`, `ERR_STATE_LOCKED`, `ERR_STATE_WRITE`; ApiError `ERR_API_TOKEN`
 */
export async function takeStateDir(
  dir: string,
  auditKeyFile: string,
  ensureDir: () => Promise<void>,
  logger: Logger,
): Promise<{ lock: StateDirLock; adminToken: string }> {
  const fixed = (what: string, path: string, r: { fixed: number }) => {
    if (r.fixed)
      logger.warn(`${what} was too open; fixed`, { path, removedModeBits: `0${r.fixed.toString(8)}` });
  };
  fixed('state directory', dir, await securePath(dir, STATE_DIR_FORBIDDEN, 'state directory'));
  await ensureDir();
  const lock = await lockStateDir(dir);
  try {
    fixed('audit key', auditKeyFile, await securePath(auditKeyFile, PRIVATE_FILE_FORBIDDEN, 'audit key'));
    // The credential of the admin API's mutating routes, read by the CLI (docs/security.md).
    const token = await ensureAdminToken(dir);
    if (token.fixedMode !== undefined)
      logger.warn('admin token file was too open; fixed', { path: token.path });
    return { lock, adminToken: token.token };
  } catch (err) {
    await lock.release();
    throw err;
  }
}
