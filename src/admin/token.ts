import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiError } from '../errors.js';

/** The admin token's file name in the state directory. */
export const ADMIN_TOKEN_FILE = 'admin.token';

/** Random bytes in a token: 256 bits, unguessable. */
const TOKEN_BYTES = 32;

/** A token as written: base64url of {@link TOKEN_BYTES} bytes (43 characters). */
const TOKEN = /^[A-Za-z0-9_-]{43,256}$/;

/** Largest token file read, bytes. */
const MAX_TOKEN_FILE = 1024;

/** What {@link ensureAdminToken} needs of the file system; injected so tests run on a fake. */
export interface AdminTokenFs {
  /** Mode bits and kind of `path` without following a symlink, or undefined when it does not exist. */
  lstat(path: string): Promise<{ readonly mode: number; readonly isFile: boolean } | undefined>;
  readFile(path: string): Promise<string>;
  /** Creates a new file with `mode`; rejects with `EEXIST` when it exists (never overwrites). */
  createExclusive(path: string, data: string, mode: number): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  /** Creates the directory (and parents) with `mode` when missing. */
  mkdir(path: string, mode: number): Promise<void>;
}

/** The real file system (node:fs). */
export const nodeAdminTokenFs: AdminTokenFs = {
  async lstat(path) {
    try {
      const s = await lstat(path);
      return { mode: s.mode, isFile: s.isFile() };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  },
  readFile: (path) => readFile(path, 'utf8'),
  createExclusive: (path, data, mode) => writeFile(path, data, { mode, flag: 'wx' }),
  chmod: (path, mode) => chmod(path, mode),
  async mkdir(path, mode) {
    await mkdir(path, { recursive: true, mode });
  },
};

/** The token {@link ensureAdminToken} made or found, and what it had to do. */
export interface AdminToken {
  readonly token: string;
  readonly path: string;
  /** The file was created now. */
  readonly created: boolean;
  /** The file was group/other accessible with this mode and was reset to 0600. */
  readonly fixedMode?: number;
}

/** Parses a token file's content; a coded error when it is not a token. */
export function parseAdminToken(text: string, path: string): string {
  const token = text.trim();
  if (!TOKEN.test(token)) {
    throw new ApiError(
      'ERR_API_TOKEN',
      `${path} does not hold an admin token (43+ base64url characters); delete it to have a new one made`,
    );
  }
  return token;
}

/**
 * The admin API's bearer token: read from `<stateDir>/admin.token`, or — when the file is absent —
 * 32 random bytes written there (base64url, mode 0600, created exclusively so a concurrent writer is
 * never overwritten). A file that group or others can access is reset to 0600 (reported in
 * `fixedMode`: it may have been read, so the daemon should say so); anything but a regular file
 * (a symlink, a directory) is refused. Call it once at daemon start and pass `token` to
 * {@link buildAdminApp} as `adminToken`.
 *
 * @throws ApiError `ERR_API_TOKEN` for a file that is not a regular file or holds no token.
 * @example
 * const { token } = await ensureAdminToken(config.stateDir);
 */
export async function ensureAdminToken(
  stateDir: string,
  deps: { readonly fs?: AdminTokenFs; readonly random?: (n: number) => Uint8Array } = {},
): Promise<AdminToken> {
  if (typeof stateDir !== 'string' || stateDir === '') {
    throw new TypeError('ensureAdminToken: stateDir must be a non-empty path');
  }
  const fs = deps.fs ?? nodeAdminTokenFs;
  const random = deps.random ?? ((n: number) => randomBytes(n));
  const path = join(stateDir, ADMIN_TOKEN_FILE);
  let stat = await fs.lstat(path);
  if (!stat) {
    await fs.mkdir(stateDir, 0o700);
    const bytes = random(TOKEN_BYTES);
    if (bytes.length < TOKEN_BYTES) throw new TypeError('ensureAdminToken: random gave too few bytes');
    const token = Buffer.from(bytes).toString('base64url');
    try {
      await fs.createExclusive(path, `${token}\n`, 0o600);
      return { token, path, created: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      stat = await fs.lstat(path); // another process made it first: use theirs
      if (!stat) throw err;
    }
  }
  if (!stat.isFile) {
    throw new ApiError('ERR_API_TOKEN', `${path} is not a regular file (a symlink or directory is refused)`);
  }
  let fixedMode: number | undefined;
  if ((stat.mode & 0o077) !== 0) {
    await fs.chmod(path, 0o600);
    fixedMode = stat.mode & 0o777;
  }
  const text = await fs.readFile(path);
  if (text.length > MAX_TOKEN_FILE) throw new ApiError('ERR_API_TOKEN', `${path} is too large for a token`);
  const token = parseAdminToken(text, path);
  return { token, path, created: false, ...(fixedMode !== undefined ? { fixedMode } : {}) };
}
