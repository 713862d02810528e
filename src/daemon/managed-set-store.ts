import { join } from 'node:path';
import { RuntimeError } from '../errors.js';
import type { StateFs } from '../federation/state-store.js';
import type { ManagedSetStore } from '../publish/spire-sync.js';

/**
 * Persists, per SPIRE server, the trust domains whose federated bundles the broker wrote (and so
 * may delete on revocation): `<stateDir>/managed-<server>.json`, written atomically (temp file,
 * fsync, rename, fsync of the directory). A missing file is an empty set; a corrupt one is an
 * error (the broker must not forget what it owns silently).
 */
export class FileManagedSetStore implements ManagedSetStore {
  readonly #dir: string;
  readonly #fs: StateFs;

  constructor(dir: string, fs: StateFs) {
    this.#dir = dir;
    this.#fs = fs;
  }

  #file(server: string): string {
    return join(this.#dir, `managed-${server}.json`);
  }

  async load(server: string): Promise<Set<string>> {
    let text: string;
    try {
      text = Buffer.from(await this.#fs.readFile(this.#file(server))).toString('utf8');
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return new Set();
      throw new RuntimeError(
        'ERR_STATE_READ',
        `cannot read ${this.#file(server)}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    try {
      const doc = JSON.parse(text) as { version?: number; server?: string; trustDomains?: unknown };
      if (
        doc.version !== 1 ||
        doc.server !== server ||
        !Array.isArray(doc.trustDomains) ||
        !doc.trustDomains.every((t) => typeof t === 'string')
      ) {
        throw new Error('unexpected shape');
      }
      return new Set(doc.trustDomains as string[]);
    } catch (cause) {
      throw new RuntimeError(
        'ERR_STATE_CORRUPT',
        `${this.#file(server)} is not a managed-set file: ${(cause as Error).message}`,
        { cause },
      );
    }
  }

  async save(server: string, managed: ReadonlySet<string>): Promise<void> {
    const target = this.#file(server);
    const tmp = `${target}.tmp-${process.pid}-${Date.now().toString(36)}`;
    const body = `${JSON.stringify({ version: 1, server, trustDomains: [...managed].sort() })}\n`;
    try {
      await this.#fs.mkdir(this.#dir, { recursive: true, mode: 0o700 });
      const fh = await this.#fs.open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(new TextEncoder().encode(body));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await this.#fs.rename(tmp, target);
      const dir = await this.#fs.open(this.#dir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      await this.#fs.unlink(tmp).catch(() => undefined);
      throw new RuntimeError('ERR_STATE_WRITE', `cannot write ${target}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}
