import { open, readFile, writeFile } from 'node:fs/promises';

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
