import { randomBytes } from 'node:crypto';
import { chmod, link, lstat, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiError } from '../../errors.js';

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
  /** Creates a new file with `mode` and syncs it; rejects with `EEXIST` when it exists. */
  createExclusive(path: string, data: string, mode: number): Promise<void>;
  /** Hard-links `existing` as `path`; rejects with `EEXIST` when `path` exists (atomic create). */
  link(existing: string, path: string): Promise<void>;
  /** Atomically replaces `path` with `from`. */
  rename(from: string, path: string): Promise<void>;
  /** Removes a file; no error when it does not exist. */
  remove(path: string): Promise<void>;
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
  async createExclusive(path, data, mode) {
    const fh = await open(path, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  link: (existing, path) => link(existing, path),
  rename: (from, path) => rename(from, path),
  async remove(path) {
    await rm(path, { force: true });
  },
  chmod: (path, mode) => chmod(path, mode),
  async mkdir(path, mode) {
    await mkdir(path, { recursive: true, mode });
  },
};

/** The token {@link ensureAdminToken} made or found, and what it had to do. */
export interface AdminToken {
  readonly token: string;
  readonly path: string;
  /** The file was created now (or replaced, see `replacedInvalid`). */
  readonly created: boolean;
  /**
   * The file held no token (e.g. empty after a crash between its creation and its write by an
   * older version, or edited) and was replaced with a new one.
   */
  readonly replacedInvalid?: boolean;
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
 * 32 random bytes written there (base64url, mode 0600). The file appears atomically with its whole
 * content (written and synced under a temporary name, then hard-linked into place, which fails
 * rather than overwrite a concurrent writer's file), so a crash never leaves an empty token. A
 * regular file that holds no token is replaced the same way (`replacedInvalid`); a file that group
 * or others can access is reset to 0600 (reported in `fixedMode`: it may have been read, so the
 * daemon should say so); anything but a regular file (a symlink, a directory) is refused. Call it
 * once at daemon start and pass `token` to {@link buildAdminApp} as `adminToken`.
 *
 * @throws ApiError `ERR_API_TOKEN` for a path that is not a regular file.
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
  const fresh = (): string => {
    const bytes = random(TOKEN_BYTES);
    if (bytes.length < TOKEN_BYTES) throw new TypeError('ensureAdminToken: random gave too few bytes');
    return Buffer.from(bytes).toString('base64url');
  };
  /** Writes `token` under a temporary name (synced, 0600), then puts it in place with `install`. */
  const writeThen = async (token: string, install: (tmp: string) => Promise<void>): Promise<void> => {
    const tmp = `${path}.new`;
    await fs.remove(tmp); // a leftover of a crash
    await fs.createExclusive(tmp, `${token}\n`, 0o600);
    try {
      await install(tmp);
    } finally {
      await fs.remove(tmp);
    }
  };

  let stat = await fs.lstat(path);
  if (!stat) {
    await fs.mkdir(stateDir, 0o700);
    const token = fresh();
    try {
      await writeThen(token, (tmp) => fs.link(tmp, path));
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
  const mode = fixedMode !== undefined ? { fixedMode } : {};
  try {
    if (text.length > MAX_TOKEN_FILE) throw new ApiError('ERR_API_TOKEN', `${path} is too large for a token`);
    return { token: parseAdminToken(text, path), path, created: false, ...mode };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    const token = fresh();
    await writeThen(token, (tmp) => fs.rename(tmp, path));
    return { token, path, created: true, replacedInvalid: true, ...mode };
  }
}
