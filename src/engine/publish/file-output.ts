import { randomBytes } from 'node:crypto';
import {
  type OmittedEntry,
  type OutputFormat,
  PER_TRUST_DOMAIN_FORMATS,
  RenderCache,
  renderOutput,
} from '../../core/bundle/outputs.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { OutputError } from '../../errors.js';
import { type Clock, systemClock } from '../../platform/clock.js';
import { convergeLoop, Trigger } from '../../platform/trigger.js';
import { nodeStateFs, type StateFs } from '../federation/state-store.js';
import type { DesiredBundles, Sink, SinkFailure, SinkReport } from './sink.js';

/**
 * The file outputs: every configured format ({@link OutputFormat}) of the accepted bundles written
 * into one directory, for consumers that read trust from files — proxyless gRPC
 * (`spiffe_trust_bundle_map_file`), Envoy (`trust_bundles` with a `filename` data source), and
 * anything that takes PEM or a JWK Set.
 *
 * Files (the directory belongs to the broker; it removes its own files that are no longer wanted):
 *
 * | format | file |
 * | --- | --- |
 * | `grpc-bundle-map` | `grpc-bundle-map.json` |
 * | `envoy-bundle-map` | `envoy-bundle-map.json` |
 * | `bundle-map` | `bundle-map.json` |
 * | `bundle` | `<trust domain>.spiffe-bundle.json` per trust domain |
 * | `pem` | `<trust domain>.pem` per trust domain with an X.509 authority |
 * | `jwks` | `<trust domain>.jwks.json` per trust domain with a JWT authority |
 *
 * Each write is atomic — a temp file in the same directory, written, fsynced, renamed over the
 * target, then the directory fsynced — so a reader sees the old file or the new one, never a
 * partial one. A file whose bytes would not change is not written (its mtime stays, so file
 * watchers stay quiet). A failed write leaves the previous file in place and is reported
 * (`ERR_OUTPUT_WRITE`) in the {@link SinkReport} and in {@link FileOutputSink.status}; the next
 * pass retries. A trust domain that leaves the desired set (removed from the allowlist, revoked)
 * leaves every map on the next pass, and its per-trust-domain files are deleted.
 * @module
 */

/** What the sink reads bundles from in {@link FileOutputSink.run}: `FederatedBundleStore` fits. */
export interface FileOutputFeed {
  /** The accepted bundles, one per trust domain. */
  bundles(): readonly TrustBundle[];
  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
}

/** The local trust domain's bundle as published: the daemon's `LocalBundle` fits. */
export interface LocalBundleFeed {
  current(): { readonly bundle: TrustBundle } | undefined;
  subscribe(listener: () => void): () => void;
}

/** Options of {@link FileOutputSink}. */
export interface FileOutputOptions {
  /** The output directory; created (mode 0755) when missing. */
  readonly dir: string;
  /** The formats to write; each at most once. */
  readonly formats: readonly OutputFormat[];
  /** When given, the local trust domain's bundle is in every output too (config `includeLocal`). */
  readonly local?: LocalBundleFeed;
  /** Mode of written files; default 0644 (trust bundles are public). */
  readonly fileMode?: number;
  /** {@link FileOutputSink.run}: full pass (re-reading the files) at least this often, ms. Default 60 000. */
  readonly resyncMs?: number;
}

/** Side effects of {@link FileOutputSink}. */
export interface FileOutputDeps {
  /** Default node:fs/promises. */
  readonly fs?: StateFs;
  /** Default the system clock: stamps status, times resyncs and backoff. */
  readonly clock?: Clock;
  /** Random temp file suffix; default 8 hex digits. */
  readonly randomSuffix?: () => string;
  /** Hears every pass's report (logs, metrics). */
  readonly onReport?: (report: SinkReport) => void;
  /** Hears each file written, removed or failed, and each pass's duration (metrics). */
  readonly observer?: FileOutputObserver;
}

/** Hooks for metrics (`BrokerMetrics.observeOutputFile`, `observeOutputPass`). */
export interface FileOutputObserver {
  file?(o: {
    readonly format: OutputFormat;
    readonly name: string;
    readonly result: 'written' | 'removed' | 'error';
  }): void;
  pass?(o: { readonly durationMs: number; readonly ok: boolean }): void;
}

/** One format's state, for `/v1/status` (`outputs.files[]`). */
export interface FileOutputStatus {
  readonly format: OutputFormat;
  /** The file, or for per-trust-domain formats its pattern (`<dir>/<trust domain>.pem`). */
  readonly path: string;
  /** When a file of this format last changed on disk (RFC 3339), or null when never in this run. */
  readonly lastWrite: string | null;
  /** The last pass's failure for this format, or null when it converged. */
  readonly lastError: { readonly code: string; readonly message: string; readonly at: string } | null;
  /** Trust domains this format describes now. */
  readonly trustDomains: readonly string[];
  /** Trust domains or authorities a consumer map left out, and why. */
  readonly omitted: readonly OmittedEntry[];
}

const MAP_FILES: Readonly<Record<string, string>> = {
  'grpc-bundle-map': 'grpc-bundle-map.json',
  'envoy-bundle-map': 'envoy-bundle-map.json',
  'bundle-map': 'bundle-map.json',
};
const PER_TD_SUFFIX: Readonly<Record<string, string>> = {
  bundle: '.spiffe-bundle.json',
  pem: '.pem',
  jwks: '.jwks.json',
};
/** Temp files of an interrupted write: never a target name. */
const TEMP_FILE = /^\..+\.tmp-[0-9a-z]+$/;

/**
 * The file an output format is written to, relative to the output directory.
 * @param trustDomain required for the per-trust-domain formats.
 */
export function outputFileName(format: OutputFormat, trustDomain?: string): string {
  const map = MAP_FILES[format];
  if (map !== undefined) return map;
  if (trustDomain === undefined) throw new TypeError(`outputFileName: ${format} needs a trust domain`);
  return `${trustDomain}${PER_TD_SUFFIX[format]}`;
}

/** The format and trust domain of a file name the sink manages, or undefined for any other name. */
function parseManagedName(name: string): { format: OutputFormat; trustDomain?: string } | undefined {
  for (const [format, file] of Object.entries(MAP_FILES)) {
    if (name === file) return { format: format as OutputFormat };
  }
  for (const [format, suffix] of Object.entries(PER_TD_SUFFIX)) {
    if (!name.endsWith(suffix) || name.length === suffix.length) continue;
    const td = name.slice(0, -suffix.length);
    try {
      if (TrustDomain.parse(td).name === td) return { format: format as OutputFormat, trustDomain: td };
    } catch {
      // Not a trust domain name: not a file of ours.
    }
  }
  return undefined;
}

interface WantedFile {
  readonly format: OutputFormat;
  readonly trustDomains: readonly string[];
  readonly text: string;
}

interface FormatState {
  lastWrite: number | undefined;
  lastError: { code: string; message: string; at: number } | undefined;
  trustDomains: readonly string[];
  omitted: readonly OmittedEntry[];
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code}: ${e.message}` : String((err as Error)?.message ?? err);
}

function isEnoent(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

const decoder = new TextDecoder();

/**
 * Writes the configured output formats of the accepted bundles into a directory (see the module
 * overview). A {@link Sink}: `apply` converges the directory to a desired set and reports;
 * {@link FileOutputSink.run} does so on every change of a feed.
 *
 * @example
 * const sink = new FileOutputSink({ dir: '/var/run/spiffe-broker/bundles',
 *   formats: ['grpc-bundle-map', 'pem'], local: localBundle });
 * await sink.run(store, signal); // or: await sink.apply({ bundles, retained: new Set() })
 */
export class FileOutputSink implements Sink {
  /** For status, logs and metrics ({@link Sink.name}). */
  readonly name = 'files';
  readonly dir: string;
  readonly #formats: readonly OutputFormat[];
  readonly #o: FileOutputOptions;
  readonly #fs: StateFs;
  /** Size and mtime of each file as this sink last wrote or read it. */
  readonly #stats = new Map<string, { size: number; mtimeMs: number }>();
  readonly #clock: Clock;
  readonly #random: () => string;
  readonly #onReport: ((r: SinkReport) => void) | undefined;
  readonly #observer: FileOutputObserver | undefined;
  /** File name → the bytes it holds as last written or read (absent: not known). */
  readonly #known = new Map<string, string>();
  /** Per trust domain, the bundle document last converged (what "changed" is measured against). */
  #lastConverged: Map<string, string> | undefined;
  readonly #state = new Map<OutputFormat, FormatState>();
  /** Per-bundle renderings: a pass re-renders only the bundles that changed. */
  readonly #cache = new RenderCache();
  #cleanedTemps = false;
  /** Serialises passes: `apply` from `run` and from a caller never interleave. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: FileOutputOptions, deps: FileOutputDeps = {}) {
    if (typeof opts?.dir !== 'string' || opts.dir.length === 0) {
      throw new TypeError('FileOutputSink: opts.dir must be a non-empty path');
    }
    if (new Set(opts.formats).size !== opts.formats.length) {
      throw new TypeError('FileOutputSink: a format is listed twice');
    }
    this.dir = opts.dir.replace(/\/+$/, '') || '/';
    this.#formats = [...opts.formats];
    this.#o = opts;
    this.#fs = deps.fs ?? nodeStateFs;
    this.#clock = deps.clock ?? systemClock;
    this.#random = deps.randomSuffix ?? (() => randomBytes(4).toString('hex'));
    this.#onReport = deps.onReport;
    this.#observer = deps.observer;
    for (const f of this.#formats) {
      this.#state.set(f, { lastWrite: undefined, lastError: undefined, trustDomains: [], omitted: [] });
    }
  }

  /** Each configured format's last write, last error and content, in configuration order. */
  status(): FileOutputStatus[] {
    const iso = (ms: number | undefined): string | null =>
      ms === undefined ? null : new Date(ms).toISOString();
    return this.#formats.map((format) => {
      const s = this.#state.get(format)!;
      return {
        format,
        path: `${this.dir}/${PER_TRUST_DOMAIN_FORMATS.has(format) ? outputFileName(format, '<trust domain>') : outputFileName(format)}`,
        lastWrite: iso(s.lastWrite),
        lastError: s.lastError
          ? { code: s.lastError.code, message: s.lastError.message, at: iso(s.lastError.at)! }
          : null,
        trustDomains: s.trustDomains,
        omitted: s.omitted,
      };
    });
  }

  /**
   * {@link Sink.apply}: writes every configured format of `desired.bundles` (plus the local bundle
   * when configured) and removes files of trust domains no longer desired. Per-trust-domain files
   * of a `retained` trust domain are left as they are. Failures are reported, never thrown.
   */
  apply(desired: DesiredBundles, signal?: AbortSignal): Promise<SinkReport> {
    return this.#serial(() => this.#pass(desired, signal, false));
  }

  /**
   * Converges on every change of `feed` (and of the local bundle), at least every `resyncMs` (a
   * full pass re-reads the files, repairing edited or deleted ones), and after a failed pass with
   * backoff (0.5 s doubling up to `resyncMs`). Resolves when `signal` aborts.
   */
  async run(
    feed: FileOutputFeed,
    signal: AbortSignal,
    retained: () => ReadonlySet<string> = () => new Set(),
  ): Promise<void> {
    const wake = new Trigger();
    const fire = (): void => wake.fire();
    const unsubs = [feed.subscribe(fire), ...(this.#o.local ? [this.#o.local.subscribe(fire)] : [])];
    const resync = this.#o.resyncMs ?? 60_000;
    let lastFull = Number.NEGATIVE_INFINITY;
    try {
      await convergeLoop(wake, this.#clock, resync, signal, async () => {
        const full = this.#clock.now() - lastFull >= resync;
        const desired: DesiredBundles = {
          bundles: new Map(feed.bundles().map((b) => [b.trustDomain.name, b])),
          retained: retained(),
        };
        const report = await this.#serial(() => this.#pass(desired, signal, full));
        if (full) lastFull = this.#clock.now();
        return report.ok;
      });
    } finally {
      for (const u of unsubs) u();
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /**
   * The files the configured formats should hold for `bundles`, by file name, and what each
   * format's status will say once they are in place (status never runs ahead of the files).
   */
  #wanted(bundles: readonly TrustBundle[]): {
    files: Map<string, WantedFile>;
    next: Map<OutputFormat, Pick<FormatState, 'trustDomains' | 'omitted'>>;
  } {
    const files = new Map<string, WantedFile>();
    const next = new Map<OutputFormat, Pick<FormatState, 'trustDomains' | 'omitted'>>();
    for (const format of this.#formats) {
      if (!PER_TRUST_DOMAIN_FORMATS.has(format)) {
        const out = renderOutput(format, { bundles }, this.#cache);
        files.set(outputFileName(format), { format, trustDomains: out.trustDomains, text: out.text });
        next.set(format, { trustDomains: out.trustDomains, omitted: out.omitted });
        continue;
      }
      const tds: string[] = [];
      for (const b of bundles) {
        const td = b.trustDomain.name;
        // A file with nothing a consumer could trust is no file: PEM needs an X.509 authority, a
        // JWKS a JWT authority. The SPIFFE bundle is always written: empty, it means "all revoked".
        if (format === 'pem' && b.x509Authorities.length === 0) continue;
        if (format === 'jwks' && b.jwtAuthorities.size === 0) continue;
        const text = renderOutput(format, { bundles: [b], trustDomain: td }, this.#cache).text;
        files.set(outputFileName(format, td), { format, trustDomains: [td], text });
        tds.push(td);
      }
      next.set(format, { trustDomains: tds, omitted: [] });
    }
    return { files, next };
  }

  async #pass(desired: DesiredBundles, signal: AbortSignal | undefined, full: boolean): Promise<SinkReport> {
    signal?.throwIfAborted();
    const started = this.#clock.now();
    if (full) await this.#verifyKnown(signal);
    const bundles = [...desired.bundles.values()];
    const local = this.#o.local?.current()?.bundle;
    if (local && !desired.bundles.has(local.trustDomain.name)) bundles.push(local);
    bundles.sort((a, b) => (a.trustDomain.name < b.trustDomain.name ? -1 : 1));
    const now = new Map(
      bundles.map((b) => [
        b.trustDomain.name,
        renderOutput('bundle-map', { bundles: [b] }, this.#cache).text,
      ]),
    );
    const before = this.#lastConverged;
    const changed = new Set([...now].filter(([td, doc]) => before?.get(td) !== doc).map(([td]) => td));
    // A retained trust domain (allowlisted, no bundle held) is not gone: its files stay.
    const gone = new Set(
      [...(before?.keys() ?? [])].filter((td) => !now.has(td) && !desired.retained.has(td)),
    );

    const failed: SinkFailure[] = [];
    const written = new Set<string>();
    const removed = new Set<string>();
    const failedFormats = new Map<OutputFormat, OutputError>();
    const fail = (format: OutputFormat | undefined, trustDomain: string, err: OutputError): void => {
      failed.push({ trustDomain, code: err.code, message: err.message });
      if (format && !failedFormats.has(format)) failedFormats.set(format, err);
    };
    let dirty = false;

    const { files: wanted, next } = this.#wanted(bundles);
    try {
      await this.#fs.mkdir(this.dir, { recursive: true, mode: 0o755 });
    } catch (err) {
      const e = new OutputError('ERR_OUTPUT_WRITE', `output directory ${this.dir}: ${describe(err)}`, {
        cause: err,
      });
      for (const f of this.#formats) fail(f, '*', e);
      return this.#finish(failedFormats, { ok: false, written: [], removed: [], failed });
    }

    for (const [name, file] of wanted) {
      signal?.throwIfAborted();
      const path = `${this.dir}/${name}`;
      try {
        const current = await this.#current(name, path);
        if (current === file.text) continue;
        await this.#writeAtomic(name, path, file.text);
        this.#known.set(name, file.text);
        await this.#remember(name, path);
        this.#state.get(file.format)!.lastWrite = this.#clock.now();
        this.#observer?.file?.({ format: file.format, name, result: 'written' });
        dirty = true;
        for (const td of file.trustDomains) if (changed.has(td) || !before) written.add(td);
        // A map rewritten without a domain it held: that domain is gone from this file.
        for (const td of gone) if (!PER_TRUST_DOMAIN_FORMATS.has(file.format)) removed.add(td);
      } catch (err) {
        const e =
          err instanceof OutputError
            ? err
            : new OutputError('ERR_OUTPUT_WRITE', `${path}: ${describe(err)}`, { cause: err });
        const scope = PER_TRUST_DOMAIN_FORMATS.has(file.format) ? file.trustDomains[0]! : '*';
        fail(file.format, scope, e);
        this.#observer?.file?.({ format: file.format, name, result: 'error' });
      }
    }

    // Files of ours no longer wanted: a trust domain that left, a format no longer configured.
    let names: string[] = [];
    try {
      names = await this.#fs.readdir(this.dir);
    } catch (err) {
      const e = new OutputError('ERR_OUTPUT_WRITE', `cannot list ${this.dir}: ${describe(err)}`, {
        cause: err,
      });
      for (const f of this.#formats) fail(f, '*', e);
    }
    for (const name of names.sort()) {
      signal?.throwIfAborted();
      if (wanted.has(name)) continue;
      if (TEMP_FILE.test(name)) {
        // Left by a crash mid-write (never a target): removed once, at the first pass.
        if (!this.#cleanedTemps) await this.#fs.unlink(`${this.dir}/${name}`).catch(() => undefined);
        continue;
      }
      const managed = parseManagedName(name);
      if (!managed) continue;
      if (managed.trustDomain !== undefined && desired.retained.has(managed.trustDomain)) continue;
      try {
        await this.#fs.unlink(`${this.dir}/${name}`);
        this.#known.delete(name);
        dirty = true;
        if (managed.trustDomain !== undefined) removed.add(managed.trustDomain);
        this.#observer?.file?.({ format: managed.format, name, result: 'removed' });
        const state = this.#state.get(managed.format);
        if (state) state.lastWrite = this.#clock.now();
      } catch (err) {
        if (isEnoent(err)) continue;
        const e = new OutputError('ERR_OUTPUT_WRITE', `cannot remove ${this.dir}/${name}: ${describe(err)}`, {
          cause: err,
        });
        const format = this.#formats.includes(managed.format) ? managed.format : undefined;
        fail(format, managed.trustDomain ?? '*', e);
        this.#observer?.file?.({ format: managed.format, name, result: 'error' });
      }
    }
    this.#cleanedTemps = true;
    if (dirty) await this.#syncDir().catch(() => undefined);

    for (const td of gone) {
      if (!failed.some((f) => f.trustDomain === td || f.trustDomain === '*')) removed.add(td);
    }
    if (failed.length === 0) this.#lastConverged = now;
    const report: SinkReport = {
      ok: failed.length === 0,
      written: [...written].filter((td) => !failed.some((f) => f.trustDomain === td)).sort(),
      removed: [...removed].filter((td) => !now.has(td)).sort(),
      failed,
    };
    this.#observer?.pass?.({ durationMs: this.#clock.now() - started, ok: report.ok });
    // What each format's files now hold (a format that failed keeps its previous status).
    for (const [format, n] of next) {
      if (failedFormats.has(format)) continue;
      const state = this.#state.get(format)!;
      state.trustDomains = n.trustDomains;
      state.omitted = n.omitted;
    }
    return this.#finish(failedFormats, report);
  }

  #finish(failedFormats: ReadonlyMap<OutputFormat, OutputError>, report: SinkReport): SinkReport {
    const at = this.#clock.now();
    for (const [format, state] of this.#state) {
      const err = failedFormats.get(format);
      state.lastError = err ? { code: err.code, message: err.message, at } : undefined;
    }
    this.#onReport?.(report);
    return report;
  }

  /**
   * A full pass's check that the files are still what this sink wrote or read: a file whose size
   * or modification time changed (edited, replaced, deleted) is forgotten, so the pass reads it
   * again and repairs it. With no `stat` in the injected fs, every file is read again. Stat-ing
   * 3,000 files is far cheaper than reading 3 MB of them, and keeps a change that arrives during a
   * full pass from waiting behind it (bench/outputs.bench.ts).
   */
  async #verifyKnown(signal: AbortSignal | undefined): Promise<void> {
    const stat = this.#fs.stat?.bind(this.#fs);
    if (!stat) {
      this.#known.clear();
      return;
    }
    for (const name of [...this.#known.keys()]) {
      signal?.throwIfAborted();
      const seen = this.#stats.get(name);
      const now = await stat(`${this.dir}/${name}`).catch(() => undefined);
      if (!seen || !now || now.size !== seen.size || now.mtimeMs !== seen.mtimeMs) {
        this.#known.delete(name);
        this.#stats.delete(name);
      }
    }
  }

  /** Records a file's size and mtime as this sink left it (see {@link #verifyKnown}). */
  async #remember(name: string, path: string): Promise<void> {
    const st = await this.#fs.stat?.(path).catch(() => undefined);
    if (st) this.#stats.set(name, { size: st.size, mtimeMs: st.mtimeMs });
    else this.#stats.delete(name);
  }

  /** The bytes `name` holds: from memory when this sink wrote or read it, else from disk. */
  async #current(name: string, path: string): Promise<string | undefined> {
    if (this.#known.has(name)) return this.#known.get(name);
    try {
      const text = decoder.decode(await this.#fs.readFile(path));
      this.#known.set(name, text);
      await this.#remember(name, path);
      return text;
    } catch (err) {
      if (isEnoent(err)) return undefined;
      // Unreadable: write it anew (the write reports what is wrong, if anything).
      return undefined;
    }
  }

  /** temp file in the same directory → write → fsync → close → rename over `path`. */
  async #writeAtomic(name: string, path: string, text: string): Promise<void> {
    const tmp = `${this.dir}/.${name}.tmp-${this.#random()}`;
    let handle: Awaited<ReturnType<StateFs['open']>> | undefined;
    try {
      handle = await this.#fs.open(tmp, 'wx', this.#o.fileMode ?? 0o644);
      await handle.writeFile(new TextEncoder().encode(text));
      await handle.sync();
      await handle.close();
      handle = undefined;
      await this.#fs.rename(tmp, path);
    } catch (err) {
      if (handle) await handle.close().catch(() => undefined);
      await this.#fs.unlink(tmp).catch(() => undefined);
      // What is on disk is no longer known for sure: read it again next time.
      this.#known.delete(name);
      throw new OutputError('ERR_OUTPUT_WRITE', `cannot write ${path}: ${describe(err)}`, { cause: err });
    }
  }

  /** fsync(2) of the directory, so the renames and unlinks survive a crash. */
  async #syncDir(): Promise<void> {
    const h = await this.#fs.open(this.dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  }
}
