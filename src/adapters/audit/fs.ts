import { open, readFile, stat, writeFile } from 'node:fs/promises';

/** An append-only handle on the audit file. */
export interface AuditAppendHandle {
  /** Appends all of `data` (one write). */
  append(data: Uint8Array): Promise<void>;
  /** Flushes the file to stable storage (fsync). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The file operations the audit trail needs; injected so tests run on an in-memory fake. */
export interface AuditFs {
  /** The file's bytes, or undefined when it does not exist. */
  readFile(path: string): Promise<Uint8Array | undefined>;
  /** Creates a new file with `mode`; rejects when it already exists (never overwrites a key). */
  createExclusive(path: string, data: string, mode: number): Promise<void>;
  /** Opens (creating with mode 0600 if needed) for appending. */
  openAppend(path: string): Promise<AuditAppendHandle>;
  /**
   * The file's size in bytes, or undefined when it does not exist. With {@link readRange}, lets
   * the writer resume from the file's tail instead of reading it whole; without them it falls back
   * to {@link readFile}.
   */
  size?(path: string): Promise<number | undefined>;
  /** Up to `length` bytes from byte `position` (fewer at the end of the file). */
  readRange?(path: string, position: number, length: number): Promise<Uint8Array>;
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** The real file system (node:fs). */
export const nodeAuditFs: AuditFs = {
  async readFile(path) {
    try {
      return new Uint8Array(await readFile(path));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  },
  async size(path) {
    try {
      return (await stat(path)).size;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  },
  async readRange(path, position, length) {
    const fh = await open(path, 'r');
    try {
      const buf = new Uint8Array(length);
      let off = 0;
      while (off < length) {
        const { bytesRead } = await fh.read(buf, off, length - off, position + off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      return buf.subarray(0, off);
    } finally {
      await fh.close();
    }
  },
  async createExclusive(path, data, mode) {
    await writeFile(path, data, { mode, flag: 'wx' });
  },
  async openAppend(path) {
    const fh = await open(path, 'a', 0o600);
    return {
      async append(data) {
        let off = 0;
        while (off < data.length) {
          const { bytesWritten } = await fh.write(data, off, data.length - off);
          off += bytesWritten;
        }
      },
      sync: () => fh.sync(),
      close: () => fh.close(),
    };
  },
};
