import { basename, dirname } from 'node:path';
import type { StateFileHandle, StateFs } from '../../src/engine/federation/state-store.js';

/**
 * An in-memory, single-directory file system for {@link StateFs} that models what survives a
 * crash (power loss):
 *
 * - file contents are durable only once their handle was fsynced;
 * - directory entries (create, rename, unlink) are durable only once the directory was fsynced.
 *
 * `crashAfter(k)` makes the k-th operation from now and every later one throw {@link CrashError}
 * (the process "died" before that step). {@link CrashFs.recover} then returns a fresh file system
 * holding what a reboot would find: with `'durable'`, only fsynced directory entries (the
 * pessimistic model); with `'eager'`, every directory operation done so far persisted but file
 * contents still revert to their last fsync (the metadata-before-data reordering that
 * fsync-before-rename protects against). `failOn` injects an errno on one operation instead.
 */
export class CrashFs implements StateFs {
  /** Every operation, in order, as `op path`, for assertions. */
  readonly log: string[] = [];
  #inodes = new Map<number, { data: Uint8Array; durable: Uint8Array }>();
  #entries = new Map<string, number>();
  #durableEntries = new Map<string, number>();
  #nextIno = 1;
  #dir: string;
  #dirExists: boolean;
  #remaining = Number.POSITIVE_INFINITY;
  #crashed = false;
  #fail: { op: string; code: string; match?: RegExp } | undefined;

  /** `dirExists: false` models a state directory not created yet (default: it exists). */
  constructor(dir: string, opts: { dirExists?: boolean } = {}) {
    this.#dir = dir;
    this.#dirExists = opts.dirExists ?? true;
  }

  /** The operation after the next `k` ones crashes (k = 0: the very next one). */
  crashAfter(k: number): void {
    this.#remaining = k;
  }

  get crashed(): boolean {
    return this.#crashed;
  }

  /** Makes the next `op` (optionally on a path matching `match`) fail with `code` (e.g. ENOSPC). */
  failOn(
    op: 'open' | 'writeFile' | 'sync' | 'rename' | 'unlink' | 'readFile',
    code: string,
    match?: RegExp,
  ): void {
    this.#fail = match ? { op, code, match } : { op, code };
  }

  /** The file system a reboot would find. */
  recover(model: 'durable' | 'eager'): CrashFs {
    const fs = new CrashFs(this.#dir, { dirExists: this.#dirExists });
    const entries = model === 'durable' ? this.#durableEntries : this.#entries;
    for (const [name, ino] of entries) {
      const inode = this.#inodes.get(ino)!;
      fs.#inodes.set(ino, { data: inode.durable, durable: inode.durable });
      fs.#entries.set(name, ino);
      fs.#durableEntries.set(name, ino);
    }
    fs.#nextIno = this.#nextIno;
    return fs;
  }

  /** Writes a file directly (durably), for seeding tests. */
  put(name: string, content: string | Uint8Array): void {
    const data = typeof content === 'string' ? new TextEncoder().encode(content) : content;
    const ino = this.#nextIno++;
    this.#inodes.set(ino, { data, durable: data });
    this.#entries.set(name, ino);
    this.#durableEntries.set(name, ino);
    this.#dirExists = true;
  }

  /** A file's current content as text, or undefined. */
  get(name: string): string | undefined {
    const ino = this.#entries.get(name);
    return ino === undefined ? undefined : new TextDecoder().decode(this.#inodes.get(ino)!.data);
  }

  /** Current entry names, sorted. */
  names(): string[] {
    return [...this.#entries.keys()].sort();
  }

  #step(op: string, path: string): void {
    if (this.#crashed) throw new CrashError(`${op} ${path} after crash`);
    if (this.#remaining === 0) {
      this.#crashed = true;
      throw new CrashError(`crash before ${op} ${path}`);
    }
    this.#remaining--;
    this.log.push(`${op} ${basename(path)}`);
    const f = this.#fail;
    if (f && f.op === op && (!f.match || f.match.test(path))) {
      this.#fail = undefined;
      throw errno(f.code, `${op} ${path}`);
    }
  }

  #name(path: string): string {
    if (dirname(path) !== this.#dir) throw errno('ENOENT', `outside the fake directory: ${path}`);
    return basename(path);
  }

  async mkdir(path: string): Promise<unknown> {
    this.#step('mkdir', path);
    if (path !== this.#dir) throw errno('EACCES', `mkdir ${path}`);
    this.#dirExists = true;
    return undefined;
  }

  async readdir(path: string): Promise<string[]> {
    this.#step('readdir', path);
    if (path !== this.#dir || !this.#dirExists) throw errno('ENOENT', `readdir ${path}`);
    return this.names();
  }

  async readFile(path: string): Promise<Uint8Array> {
    this.#step('readFile', path);
    const ino = this.#entries.get(this.#name(path));
    if (ino === undefined) throw errno('ENOENT', `readFile ${path}`);
    return Uint8Array.from(this.#inodes.get(ino)!.data);
  }

  async open(path: string, flags: 'wx' | 'r'): Promise<StateFileHandle> {
    this.#step('open', path);
    if (flags === 'r') {
      if (path !== this.#dir)
        throw errno('EISDIR', `open ${path} for reading is only modelled for the directory`);
      return {
        writeFile: async () => {
          throw errno('EBADF', 'directory');
        },
        sync: async () => {
          this.#step('syncdir', path);
          this.#durableEntries = new Map(this.#entries);
        },
        close: async () => {
          this.#step('close', path);
        },
      };
    }
    const name = this.#name(path);
    if (!this.#dirExists) throw errno('ENOENT', `open ${path}`);
    if (this.#entries.has(name)) throw errno('EEXIST', `open ${path}`);
    const ino = this.#nextIno++;
    const inode = { data: new Uint8Array(), durable: new Uint8Array() };
    this.#inodes.set(ino, inode);
    this.#entries.set(name, ino);
    return {
      writeFile: async (data) => {
        this.#step('writeFile', path);
        inode.data = Uint8Array.from(data);
      },
      sync: async () => {
        this.#step('sync', path);
        inode.durable = inode.data;
      },
      close: async () => {
        this.#step('close', path);
      },
    };
  }

  async rename(from: string, to: string): Promise<void> {
    this.#step('rename', from);
    const a = this.#name(from);
    const b = this.#name(to);
    const ino = this.#entries.get(a);
    if (ino === undefined) throw errno('ENOENT', `rename ${from}`);
    this.#entries.delete(a);
    this.#entries.set(b, ino);
  }

  async unlink(path: string): Promise<void> {
    this.#step('unlink', path);
    const name = this.#name(path);
    if (!this.#entries.delete(name)) throw errno('ENOENT', `unlink ${path}`);
  }
}

/** Thrown by every operation of a crashed {@link CrashFs}. */
export class CrashError extends Error {}

function errno(code: string, message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${message}`);
  err.code = code;
  return err;
}
