import type { AuditAppendHandle, AuditFs } from '../../../src/adapters/audit/index.js';

/** An in-memory AuditFs that counts syncs and can be told to fail writes. */
export class MemoryAuditFs implements AuditFs {
  readonly files = new Map<string, Uint8Array>();
  readonly modes = new Map<string, number>();
  syncs = 0;
  failWrites = false;
  /** Bytes handed out by readFile and readRange, to prove the writer reads only a file's tail. */
  bytesRead = 0;

  text(path: string): string {
    return new TextDecoder().decode(this.files.get(path) ?? new Uint8Array());
  }

  setText(path: string, text: string): void {
    this.files.set(path, new TextEncoder().encode(text));
  }

  async readFile(path: string): Promise<Uint8Array | undefined> {
    const f = this.files.get(path);
    this.bytesRead += f?.length ?? 0;
    return f ? Uint8Array.from(f) : undefined;
  }

  async size(path: string): Promise<number | undefined> {
    return this.files.get(path)?.length;
  }

  async readRange(path: string, position: number, length: number): Promise<Uint8Array> {
    const f = this.files.get(path);
    if (!f) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    const out = Uint8Array.from(f.subarray(position, position + length));
    this.bytesRead += out.length;
    return out;
  }

  async createExclusive(path: string, data: string, mode: number): Promise<void> {
    if (this.files.has(path)) throw Object.assign(new Error(`EEXIST: ${path}`), { code: 'EEXIST' });
    this.setText(path, data);
    this.modes.set(path, mode);
  }

  async openAppend(path: string): Promise<AuditAppendHandle> {
    if (!this.files.has(path)) this.files.set(path, new Uint8Array());
    return {
      append: async (data) => {
        if (this.failWrites) throw new Error('EIO: disk on fire');
        const old = this.files.get(path)!;
        const next = new Uint8Array(old.length + data.length);
        next.set(old);
        next.set(data, old.length);
        this.files.set(path, next);
      },
      sync: async () => {
        this.syncs++;
      },
      close: async () => {},
    };
  }
}
