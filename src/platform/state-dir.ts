import * as fsp from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { RuntimeError } from '../errors.js';

/**
 * The state directory's guards, taken at start before anything in it is read or written:
 * - an exclusive lock (`broker.lock`), so two brokers never interleave state or audit writes;
 * - permissions: the directory must not be writable by others (anyone who can write it can plant
 *   a last-known-good bundle or reset a high-water mark), and a private key file (the audit
 *   signing key) must not be readable by others.
 * @module
 */

/** The file operations the guards use; node:fs/promises by default. */
export interface StateDirFs {
  open(
    path: string,
    flags: 'wx',
  ): Promise<{ writeFile(data: string): Promise<void>; close(): Promise<void> }>;
  readFile(path: string, encoding: 'utf8'): Promise<string>;
  unlink(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  /** link(2): fails with EEXIST when `to` exists. */
  link(from: string, to: string): Promise<void>;
  stat(path: string): Promise<{ mode: number; uid: number; mtimeMs: number }>;
  chmod(path: string, mode: number): Promise<void>;
  utimes(path: string, atime: Date, mtime: Date): Promise<void>;
  mkdir(path: string, opts: { recursive: true; mode: number }): Promise<unknown>;
}

const nodeFs: StateDirFs = {
  open: (p, f) => fsp.open(p, f, 0o600),
  readFile: (p, e) => fsp.readFile(p, e),
  unlink: (p) => fsp.unlink(p),
  link: (a, b) => fsp.link(a, b),
  readdir: (p) => fsp.readdir(p),
  stat: (p) => fsp.stat(p),
  chmod: (p, m) => fsp.chmod(p, m),
  utimes: (p, a, m) => fsp.utimes(p, a, m),
  mkdir: (p, o) => fsp.mkdir(p, o),
};

/** Side effects of {@link lockStateDir}. */
export interface StateDirLockDeps {
  readonly fs?: StateDirFs;
  readonly pid?: number;
  readonly hostname?: string;
  readonly now?: () => number;
  /** Whether a process of this host is alive; default `process.kill(pid, 0)`. */
  readonly alive?: (pid: number) => boolean;
}

/** Lock files held by this process (two daemons in one process must not share a directory either). */
const heldHere = new Set<string>();

/** The name of the lock file inside the state directory. */
export const LOCK_FILE = 'broker.lock';
/**
 * How often the holder refreshes the lock file's mtime, ms. A lock not refreshed for
 * {@link STALE_LOCK_MS} is taken over even from another host (a shared volume whose writer died).
 */
export const LOCK_HEARTBEAT_MS = 10_000;
export const STALE_LOCK_MS = 3 * LOCK_HEARTBEAT_MS;
/** An unreadable lock file is taken over once it is this old, ms. */
export const TORN_LOCK_MS = 2_000;

/** A held state directory lock. */
export interface StateDirLock {
  /** Refreshes the heartbeat every {@link LOCK_HEARTBEAT_MS} until `signal` aborts, then releases. */
  hold(signal: AbortSignal): Promise<void>;
  /** Removes the lock file (only if it is still ours). */
  release(): Promise<void>;
}

interface LockInfo {
  readonly pid: number;
  readonly hostname: string;
  readonly startedAt: string;
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? ((err as { code?: string }).code ?? undefined) : undefined;
}

function defaultAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errno(err) === 'EPERM';
  }
}

/**
 * Takes the state directory's exclusive lock: `broker.lock`, created with O_EXCL, holding the
 * holder's pid, host name and start time. A lock left behind by a holder that died is taken
 * over: on the same host when its pid is gone (or is our own pid: a container restarted as PID
 * 1); on any host when its heartbeat is older than {@link STALE_LOCK_MS}.
 * @throws RuntimeError `ERR_STATE_LOCKED` when another live broker holds it; `ERR_STATE_WRITE`
 *   when the lock file cannot be created.
 */
export async function lockStateDir(dir: string, deps: StateDirLockDeps = {}): Promise<StateDirLock> {
  const fs = deps.fs ?? nodeFs;
  const pid = deps.pid ?? process.pid;
  const host = deps.hostname ?? osHostname();
  const now = deps.now ?? Date.now;
  const alive = deps.alive ?? defaultAlive;
  const file = join(dir, LOCK_FILE);
  const mine: LockInfo = { pid, hostname: host, startedAt: new Date(now()).toISOString() };
  const text = `${JSON.stringify(mine)}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    // The lock appears with its content or not at all: written to a temp file, then hard-linked
    // to its name (link(2) fails with EEXIST when the name is taken). A broker killed between
    // creating and writing an O_EXCL file would leave an empty lock that blocks the next start
    // (the crash test found it).
    const tmp = `${file}.${pid}.${Math.floor(now())}.tmp`;
    try {
      const h = await fs.open(tmp, 'wx');
      try {
        await h.writeFile(text);
      } finally {
        await h.close();
      }
      try {
        await fs.link(tmp, file);
      } finally {
        await fs.unlink(tmp).catch(() => undefined);
      }
      heldHere.add(file);
      // Temp files of brokers killed before linking theirs: never a lock, remove them.
      for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
        if (name.startsWith(`${LOCK_FILE}.`) && name.endsWith('.tmp'))
          await fs.unlink(join(dir, name)).catch(() => undefined);
      }
      return lockHandle(fs, file, text, now);
    } catch (err) {
      if (errno(err) !== 'EEXIST') {
        throw new RuntimeError('ERR_STATE_WRITE', `cannot create the state lock ${file}: ${String(err)}`, {
          cause: err,
        });
      }
    }
    let holder: LockInfo | undefined;
    let mtimeMs = 0;
    try {
      mtimeMs = (await fs.stat(file)).mtimeMs;
      holder = JSON.parse(await fs.readFile(file, 'utf8')) as LockInfo;
    } catch (err) {
      if (errno(err) === 'ENOENT') continue; // released meanwhile: try again
      holder = undefined; // torn or foreign content: judged by its age alone
    }
    const sameHost = holder?.hostname === host;
    const dead =
      holder !== undefined &&
      typeof holder.pid === 'number' &&
      sameHost &&
      ((holder.pid === pid && !heldHere.has(file)) || (holder.pid !== pid && !alive(holder.pid)));
    // A lock is never written empty or torn (it appears whole through link(2)); one that cannot be
    // read was left by a broker that died while writing it the old way: stale after a moment.
    const stale = now() - mtimeMs > (holder === undefined ? TORN_LOCK_MS : STALE_LOCK_MS);
    if (!dead && !stale) {
      throw new RuntimeError(
        'ERR_STATE_LOCKED',
        `state directory ${dir} is in use by another broker (${
          holder
            ? `pid ${holder.pid} on ${holder.hostname}, since ${holder.startedAt}`
            : 'unreadable lock file'
        }); two brokers must never share a state directory. If that broker is gone, remove ${file}`,
      );
    }
    await fs.unlink(file).catch((err: unknown) => {
      if (errno(err) !== 'ENOENT') throw err;
    });
  }
  throw new RuntimeError(
    'ERR_STATE_LOCKED',
    `could not take the state lock ${file}: it keeps being re-created`,
  );
}

function lockHandle(fs: StateDirFs, file: string, text: string, now: () => number): StateDirLock {
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    heldHere.delete(file);
    try {
      if ((await fs.readFile(file, 'utf8')) === text) await fs.unlink(file);
    } catch {
      // Gone already, or taken over: nothing of ours to remove.
    }
  };
  return {
    release,
    async hold(signal: AbortSignal): Promise<void> {
      try {
        while (!signal.aborted) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, LOCK_HEARTBEAT_MS);
            t.unref?.();
            signal.addEventListener(
              'abort',
              () => {
                clearTimeout(t);
                resolve();
              },
              { once: true },
            );
          });
          if (signal.aborted) break;
          const at = new Date(now());
          await fs.utimes(file, at, at).catch(() => undefined);
        }
      } finally {
        await release();
      }
    },
  };
}

/** What {@link securePath} did. */
export interface SecureResult {
  /** The mode bits it removed (0 when the path was already private enough). */
  readonly fixed: number;
}

/**
 * Makes sure `path` grants nothing in `forbidden` (mode bits) to group or others: removes those
 * bits when this process owns the path, refuses otherwise. A missing path is fine (it will be
 * created private).
 * @throws RuntimeError `ERR_STATE_PERMISSIONS` when the bits are set and cannot be removed.
 */
export async function securePath(
  path: string,
  forbidden: number,
  what: string,
  deps: { fs?: StateDirFs; uid?: number } = {},
): Promise<SecureResult> {
  const fs = deps.fs ?? nodeFs;
  let st: { mode: number; uid: number };
  try {
    st = await fs.stat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') return { fixed: 0 };
    throw new RuntimeError('ERR_STATE_READ', `cannot stat ${what} ${path}: ${String(err)}`, { cause: err });
  }
  const bad = st.mode & forbidden;
  if (bad === 0) return { fixed: 0 };
  const uid = deps.uid ?? process.getuid?.();
  const mode = st.mode & 0o7777;
  const octal = (m: number) => `0${m.toString(8)}`;
  if (uid !== undefined && uid !== st.uid && uid !== 0) {
    throw new RuntimeError(
      'ERR_STATE_PERMISSIONS',
      `${what} ${path} has mode ${octal(mode)} (${describeBits(bad)}) and belongs to uid ${st.uid}, not this process: fix it with chmod ${octal(mode & ~forbidden)}`,
    );
  }
  try {
    await fs.chmod(path, mode & ~forbidden);
  } catch (err) {
    throw new RuntimeError(
      'ERR_STATE_PERMISSIONS',
      `${what} ${path} has mode ${octal(mode)} (${describeBits(bad)}) and could not be fixed: ${String(err)}`,
      { cause: err },
    );
  }
  return { fixed: bad };
}

function describeBits(bits: number): string {
  const out: string[] = [];
  if (bits & 0o020) out.push('group-writable');
  if (bits & 0o002) out.push('world-writable');
  if (bits & 0o040) out.push('group-readable');
  if (bits & 0o004) out.push('world-readable');
  if (bits & 0o011) out.push('executable by others');
  return out.join(', ') || 'too open';
}

/** Mode bits a state directory must not grant: write by group or others. */
export const STATE_DIR_FORBIDDEN = 0o022;
/** Mode bits a private key file must not grant: any access by group or others. */
export const PRIVATE_FILE_FORBIDDEN = 0o077;
