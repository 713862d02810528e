import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Content referenced by custom resources (an inline bootstrap bundle, a CA in a ConfigMap) becomes
 * a file, because a {@link PeerConfig} names files (`caFile`, `bootstrapBundleFile`) and the daemon
 * reads them through its injected file system — the same path as for the YAML allowlist.
 *
 * Files are content-addressed (`<sha256>.<ext>`): new content is a new path, so the daemon never
 * reads a half-written file and notices changes by the path changing.
 * @module
 */

/** Where referenced content is materialised. */
export interface ReferenceFileStore {
  /** Stores `content`; returns its absolute path. Idempotent for equal content. */
  put(content: string, ext: 'pem' | 'json'): Promise<string>;
  /** Removes stored files not in `keep` (absolute paths). */
  prune(keep: ReadonlySet<string>): Promise<void>;
}

/** A {@link ReferenceFileStore} in a directory (e.g. `<stateDir>/k8s-references`), created 0700. */
export class DirectoryReferenceStore implements ReferenceFileStore {
  readonly #dir: string;
  readonly #written = new Set<string>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  async put(content: string, ext: 'pem' | 'json'): Promise<string> {
    const name = `${createHash('sha256').update(content, 'utf8').digest('hex')}.${ext}`;
    const path = join(this.#dir, name);
    if (this.#written.has(path)) return path;
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, content, { mode: 0o644 });
    await rename(tmp, path);
    this.#written.add(path);
    return path;
  }

  async prune(keep: ReadonlySet<string>): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch {
      return;
    }
    for (const n of names) {
      const path = join(this.#dir, n);
      if (!/^[0-9a-f]{64}\.(pem|json)$/.test(n) || keep.has(path)) continue;
      await rm(path, { force: true });
      this.#written.delete(path);
    }
  }
}

/** An in-memory {@link ReferenceFileStore} (`mem:<sha256>.<ext>` paths) for tests and dry runs. */
export class MemoryReferenceStore implements ReferenceFileStore {
  readonly files = new Map<string, string>();

  async put(content: string, ext: 'pem' | 'json'): Promise<string> {
    const path = `mem:${createHash('sha256').update(content, 'utf8').digest('hex')}.${ext}`;
    this.files.set(path, content);
    return path;
  }

  async prune(keep: ReadonlySet<string>): Promise<void> {
    for (const p of [...this.files.keys()]) if (!keep.has(p)) this.files.delete(p);
  }
}
