import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleepTimer } from 'node:timers/promises';
import { ConfigError } from '../../errors.js';
import { Trigger } from '../../platform/trigger.js';
import { type AllowlistParseOptions, parseAllowlist } from './allowlist.js';
import { type AllowlistDiff, diffAllowlists } from './allowlist-diff.js';
import { assertReferencedFiles, type ReferencedFileFs } from './referenced-files.js';
import type { Allowlist } from './types.js';

/** A new allowlist took effect. */
export interface AllowlistUpdate {
  readonly allowlist: Allowlist;
  /** The allowlist it replaces; undefined on the first load. */
  readonly previous: Allowlist | undefined;
  readonly diff: AllowlistDiff;
}

/** What the watcher reads the file with. */
export interface AllowlistWatcherFs {
  /** The file's text (UTF-8). Rejects when it cannot be read. */
  readonly readFile: (path: string) => Promise<string>;
  /**
   * The file's identity and change stamps (following symlinks). When given, a poll whose stat
   * equals the last one's skips reading the file, except every {@link FULL_READ_EVERY}th poll.
   */
  readonly stat?: (path: string) => Promise<AllowlistFileStat>;
}

/** What a poll compares before reading the file. */
export interface AllowlistFileStat {
  readonly ino: number | bigint;
  readonly size: number | bigint;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

/**
 * With `stat`, the file is still read in full every this many polls (every minute at the default
 * 2 s): an edit that keeps size and both timestamps (a coarse-mtime filesystem, a tool restoring
 * times) is found within that.
 */
export const FULL_READ_EVERY = 30;

/** Injected side effects; real defaults are used for what is omitted. */
export interface AllowlistWatcherDeps {
  readonly fs?: AllowlistWatcherFs;
  /**
   * Waits `ms` milliseconds, or less when `signal` aborts; never rejects. Tests pass a fake clock's
   * sleep so no real time passes.
   */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** How the watcher is set up. */
export interface AllowlistWatcherOptions {
  /** The allowlist file. */
  readonly path: string;
  /** Validation context (local trust domain, SPIRE server names). */
  readonly parseOptions?: AllowlistParseOptions;
  /** Poll interval, milliseconds. Default 2000. */
  readonly intervalMs?: number;
  /**
   * When given, every allowlist is also checked with {@link checkReferencedFiles} through this fs
   * (each peer's `caFile` and `bootstrapBundleFile` opened and parsed) before it takes effect: a
   * missing or unusable file refuses the allowlist (`ERR_CONFIG_FILE` at the key's line) at
   * {@link AllowlistWatcher.load} and on reload, where the previous allowlist stays in force. A
   * refusal for a file is retried on every poll (the allowlist text need not change when the file
   * is fixed) and reported once per distinct problem.
   */
  readonly referencedFiles?: ReferencedFileFs;
  /** An allowlist already loaded (e.g. by {@link AllowlistWatcher.load}); changes are diffed against it. */
  readonly initial?: Allowlist;
  /** Called, and awaited, when a changed file parsed cleanly. Updates are delivered one at a time. */
  readonly onChange: (update: AllowlistUpdate) => void | Promise<void>;
  /**
   * Called when the file cannot be read or is invalid; the previous allowlist stays in force.
   * Called once per distinct failure (the same broken content is not reported on every poll).
   * The error is a ConfigError; a ConfigValidationError carries every issue.
   */
  readonly onError: (
    error: ConfigError,
    info: { readonly path: string; readonly keptVersion?: string },
  ) => void;
}

/** Default poll interval: quick enough for an operator's edit, cheap for a small file. */
export const DEFAULT_ALLOWLIST_POLL_MS = 2000;

const realFs: AllowlistWatcherFs = { readFile: (p) => readFile(p, 'utf8'), stat: (p) => stat(p) };

async function realSleep(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleepTimer(ms, undefined, { signal });
  } catch {
    // aborted: return early
  }
}

/**
 * Hot reload of the allowlist file. Polls the file's content (a content hash, so editors that
 * replace the file by rename and coarse mtimes are both handled), parses a changed file, and
 * delivers the new allowlist with its diff. An invalid or unreadable file never replaces a valid
 * allowlist: the previous one stays in force and the problem is reported.
 *
 * @example
 * const watcher = new AllowlistWatcher({
 *   path: config.allowlist.file,
 *   parseOptions: { localTrustDomain: config.trustDomain },
 *   onChange: ({ allowlist, diff }) => manager.reconcile(allowlist, diff),
 *   onError: (err) => logger.warn(err.message),
 * });
 * await watcher.load();            // fail fast at start-up
 * await watcher.run(signal);       // then follow edits until aborted
 */
export class AllowlistWatcher {
  readonly #opts: AllowlistWatcherOptions;
  readonly #fs: AllowlistWatcherFs;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  #current: Allowlist | undefined;
  /** Hash of the last text seen (valid or not), or the last read error, to report each failure once. */
  #lastSeen: string | undefined;
  /** The last referenced-file refusal reported (content key and message), so it is reported once. */
  #lastFileProblem: string | undefined;
  readonly #trigger = new Trigger();
  /** The stat of the file when it was last read and fully handled, and polls skipped since. */
  #lastStat: string | undefined;
  #skipped = 0;

  constructor(options: AllowlistWatcherOptions, deps: AllowlistWatcherDeps = {}) {
    const interval = options.intervalMs ?? DEFAULT_ALLOWLIST_POLL_MS;
    if (!(interval > 0)) throw new TypeError('AllowlistWatcher: intervalMs must be > 0');
    this.#opts = options;
    this.#fs = deps.fs ?? realFs;
    this.#sleep = deps.sleep ?? realSleep;
    this.#current = options.initial;
    this.#lastSeen = options.initial ? `text:${options.initial.version}` : undefined;
  }

  /** The allowlist in force (undefined until one loaded). */
  get current(): Allowlist | undefined {
    return this.#current;
  }

  /**
   * Reads and parses the file once and makes it current, without calling `onChange`.
   * For start-up, where an invalid allowlist should stop the broker.
   * @throws ConfigError `ERR_CONFIG_READ`, or ConfigValidationError
   */
  async load(): Promise<Allowlist> {
    const text = await this.#read();
    const allowlist = parseAllowlist(text, this.#opts.parseOptions);
    await this.#checkFiles(allowlist, text);
    this.#current = allowlist;
    this.#lastSeen = `text:${allowlist.version}`;
    return allowlist;
  }

  /**
   * One poll: reads the file and, when its content changed, parses it and delivers the update
   * or reports the failure.
   */
  async check(): Promise<'unchanged' | 'changed' | 'failed'> {
    // A poll costs a stat while nothing changed: reading and hashing a 1,000-peer allowlist
    // every 2 s was a visible share of an idle broker's CPU (bench/scale.bench.ts).
    const stamp = await this.#stamp();
    if (
      stamp !== undefined &&
      stamp === this.#lastStat &&
      this.#lastSeen?.startsWith('text:') &&
      this.#skipped < FULL_READ_EVERY - 1
    ) {
      this.#skipped++;
      return 'unchanged';
    }
    this.#skipped = 0;
    this.#lastStat = undefined;
    const result = await this.#checkText();
    // Only a text that was handled to the end may let the next polls skip: one whose referenced
    // files failed is read and checked again every poll (the files may be fixed meanwhile).
    if (result !== 'failed' && this.#lastSeen?.startsWith('text:')) this.#lastStat = stamp;
    return result;
  }

  async #stamp(): Promise<string | undefined> {
    const st = this.#fs.stat;
    if (!st) return undefined;
    try {
      const s = await st(this.#opts.path);
      return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
    } catch {
      return undefined; // the read reports it
    }
  }

  async #checkText(): Promise<'unchanged' | 'changed' | 'failed'> {
    let text: string;
    try {
      text = await this.#read();
    } catch (err) {
      const e = err as ConfigError;
      const key = `read:${e.message}`;
      if (this.#lastSeen === key) return 'failed';
      this.#lastSeen = key;
      this.#report(e);
      return 'failed';
    }
    const key = `text:${createHash('sha256').update(text, 'utf8').digest('hex')}`;
    if (key === this.#lastSeen) return 'unchanged';
    this.#lastSeen = key;
    let allowlist: Allowlist;
    try {
      allowlist = parseAllowlist(text, this.#opts.parseOptions);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.#report(err);
      return 'failed';
    }
    try {
      await this.#checkFiles(allowlist, text);
      this.#lastFileProblem = undefined;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      // Not "seen": the next poll checks the files again, though the text is the same.
      this.#lastSeen = undefined;
      if (this.#lastFileProblem !== `${key}\n${err.message}`) {
        this.#lastFileProblem = `${key}\n${err.message}`;
        this.#report(err);
      }
      return 'failed';
    }
    const previous = this.#current;
    if (previous && previous.version === allowlist.version) return 'unchanged';
    const diff = diffAllowlists(previous, allowlist);
    this.#current = allowlist;
    // Delivered even when only comments changed (an empty diff): the version moves on and the
    // audit trail records it.
    await this.#opts.onChange({ allowlist, previous, diff });
    return 'changed';
  }

  /** Asks a running watcher to check now (e.g. on SIGHUP or an admin request). */
  reload(): void {
    this.#trigger.fire();
  }

  /**
   * Polls until `signal` aborts. Checks immediately first when nothing is loaded yet.
   * Resolves when aborted; rejects only if `onChange` throws.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (!this.#current && !signal.aborted) await this.check();
    const timer = { sleep: (ms: number, s?: AbortSignal) => this.#sleep(ms, s ?? signal) };
    while (!signal.aborted) {
      try {
        await this.#trigger.wait(timer, this.#opts.intervalMs ?? DEFAULT_ALLOWLIST_POLL_MS, signal);
      } catch (err) {
        if (signal.aborted) break;
        throw err;
      }
      await this.check();
    }
  }

  /** @throws ConfigValidationError `ERR_CONFIG_FILE` when a file the allowlist names is unusable. */
  async #checkFiles(allowlist: Allowlist, text: string): Promise<void> {
    const fs = this.#opts.referencedFiles;
    if (fs) await assertReferencedFiles({ kind: 'Allowlist', allowlist }, fs, { text });
  }

  async #read(): Promise<string> {
    try {
      return await this.#fs.readFile(this.#opts.path);
    } catch (cause) {
      throw new ConfigError(
        'ERR_CONFIG_READ',
        `cannot read allowlist ${this.#opts.path}: ${(cause as Error).message ?? String(cause)}`,
        { cause },
      );
    }
  }

  #report(error: ConfigError): void {
    const kept = this.#current?.version;
    this.#opts.onError(
      error,
      kept === undefined ? { path: this.#opts.path } : { path: this.#opts.path, keptVersion: kept },
    );
  }
}
