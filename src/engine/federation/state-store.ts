import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { type BundleParseOptions, marshalBundle, parseBundle } from '../../core/bundle/codec.js';
import { MAX_SEQUENCE, type TrustBundle } from '../../core/bundle/trust-bundle.js';
import { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { BrokerError, RuntimeError } from '../../errors.js';

/**
 * Last-known-good persistence for peer bundles (see docs/federation-fetch.md, "State directory").
 *
 * One directory, two small JSON files per peer trust domain:
 * - `<td>.bundle.json`: the last accepted bundle in a checksummed envelope
 *   ({@link BundleEnvelope}), re-parsed with the core parser on every load;
 * - `<td>.sequence.json`: the `spiffe_sequence` high-water mark used for rollback protection
 *   across restarts ({@link SequenceEnvelope}), which an operator may reset.
 *
 * Every write is atomic and durable: a temp file in the same directory is written, fsynced,
 * closed, renamed over the target, then the directory is fsynced. A crash at any point leaves
 * either the old or the new file. A file that fails validation is never deleted: it is renamed to
 * `<name>.corrupt-<time>` and reported as `ERR_STATE_CORRUPT`.
 * @module
 */

/** An open file, as much of node's `FileHandle` as the store uses. */
export interface StateFileHandle {
  writeFile(data: Uint8Array): Promise<void>;
  /** fsync(2). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The file system operations the store performs; node:fs/promises by default. */
export interface StateFs {
  mkdir(path: string, opts: { recursive: true; mode: number }): Promise<unknown>;
  readdir(path: string): Promise<string[]>;
  readFile(path: string): Promise<Uint8Array>;
  /** `'wx'`: create a new file (fails if it exists); `'r'`: open for reading (used on directories to fsync them). */
  open(path: string, flags: 'wx' | 'r', mode?: number): Promise<StateFileHandle>;
  /** rename(2): atomically replaces `to`. */
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** stat(2): size and modification time; optional (outputs use it to skip re-reading unchanged files). */
  stat?(path: string): Promise<{ readonly size: number; readonly mtimeMs: number }>;
}

/** The real file system. */
export const nodeStateFs: StateFs = {
  mkdir: (p, o) => fsp.mkdir(p, o),
  readdir: (p) => fsp.readdir(p),
  readFile: async (p) => new Uint8Array(await fsp.readFile(p)),
  open: (p, flags, mode) => fsp.open(p, flags, mode),
  rename: (a, b) => fsp.rename(a, b),
  unlink: (p) => fsp.unlink(p),
  stat: (p) => fsp.stat(p),
};

/** Side effects of the store. */
export interface StateStoreDeps {
  /** Default {@link nodeStateFs}. */
  readonly fs?: StateFs;
  /** Milliseconds since the epoch; default `Date.now`. Stamps `acceptedAt` and quarantine names. */
  readonly now?: () => number;
  /** Random suffix for temp files; default 8 random hex digits. */
  readonly randomSuffix?: () => string;
}

/** Options of {@link StateStore}. */
export interface StateStoreOptions {
  /** The state directory; created (mode 0700) by {@link StateStore.init}. */
  readonly dir: string;
  /** Limits for re-parsing stored bundles (same as for fetched ones). */
  readonly parse?: BundleParseOptions;
}

/** A last-known-good bundle as loaded from disk. */
export interface StoredBundle {
  readonly bundle: TrustBundle;
  /** When the broker accepted it, ms since the epoch. */
  readonly acceptedAt: number;
  /** The endpoint's ETag for it, when it sent one. */
  readonly etag?: string;
}

/** Everything persisted for one peer. */
export interface PeerState {
  readonly trustDomain: TrustDomain;
  /** Absent when nothing was ever accepted (or the file was quarantined). */
  readonly lastKnownGood?: StoredBundle;
  /**
   * The highest `spiffe_sequence` accepted since the last operator reset; undefined when none is
   * recorded. When the sequence file is missing or quarantined but a bundle loaded, this is the
   * bundle's sequence (the conservative choice).
   */
  readonly sequenceHighWaterMark?: bigint;
}

/** What {@link StateStore.loadAll} returns: the peers that loaded, and every file that did not. */
export interface LoadAllResult {
  /** Sorted by trust domain name. */
  readonly peers: readonly PeerState[];
  /** `ERR_STATE_CORRUPT` (file quarantined) or `ERR_STATE_READ` (left in place) per bad file. */
  readonly problems: readonly RuntimeError[];
}

/**
 * The on-disk form of a last-known-good bundle (`version` 1). `bundle` is the SPIFFE bundle
 * document exactly as {@link marshalBundle} produced it (peer's own refresh hint and sequence), as
 * a string so its bytes — and a uint64 sequence's digits — survive untouched. `sha256` is the
 * lower-case hex SHA-256 of `JSON.stringify([version, trustDomain, sequence, acceptedAt, etag ?? null, bundle])`.
 */
export interface BundleEnvelope {
  readonly version: 1;
  readonly trustDomain: string;
  /** The bundle's `spiffe_sequence` as a decimal string (`"0"` when unset). */
  readonly sequence: string;
  /** RFC 3339 UTC timestamp. */
  readonly acceptedAt: string;
  readonly etag?: string;
  readonly bundle: string;
  readonly sha256: string;
}

/**
 * The on-disk form of a sequence high-water mark (`version` 1). `sha256` is the hex SHA-256 of
 * `JSON.stringify([version, trustDomain, highWaterMark, updatedAt, reason])`.
 */
export interface SequenceEnvelope {
  readonly version: 1;
  readonly trustDomain: string;
  /** Decimal uint64. */
  readonly highWaterMark: string;
  /** RFC 3339 UTC timestamp. */
  readonly updatedAt: string;
  /** `accepted`: raised by an accepted bundle; `reset`: set by an operator. */
  readonly reason: 'accepted' | 'reset';
  readonly sha256: string;
}

const BUNDLE_SUFFIX = '.bundle.json';
const SEQUENCE_SUFFIX = '.sequence.json';
/** Trust domain names up to this length are used verbatim in file names (NAME_MAX is 255). */
const MAX_VERBATIM_NAME = 200;
/**
 * Envelope files larger than this multiple of the bundle size cap are refused unread: the bundle
 * is stored as an escaped string (quotes double in size at most) plus a few hundred bytes.
 */
const ENVELOPE_SIZE_FACTOR = 2;
const ENVELOPE_OVERHEAD = 64 * 1024;
const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * The file name stem of a trust domain: the name itself (trust domain characters are safe in file
 * names, SPIFFE-ID §2.1), or `~sha256-<hex>` for names too long for a file name (`~` is not a
 * trust domain character, so the two forms never collide).
 */
export function stateFileStem(trustDomain: TrustDomain): string {
  const name = trustDomain.name;
  return name.length <= MAX_VERBATIM_NAME ? name : `~sha256-${sha256Hex(name)}`;
}

function bundleChecksum(e: Omit<BundleEnvelope, 'sha256'>): string {
  return sha256Hex(
    JSON.stringify([e.version, e.trustDomain, e.sequence, e.acceptedAt, e.etag ?? null, e.bundle]),
  );
}

function sequenceChecksum(e: Omit<SequenceEnvelope, 'sha256'>): string {
  return sha256Hex(JSON.stringify([e.version, e.trustDomain, e.highWaterMark, e.updatedAt, e.reason]));
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Compact UTC time for quarantine names: `20260102T030405.678Z`. */
function compactTime(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '');
}

class Invalid extends Error {}

function objectOf(text: string, what: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Invalid(`${what} is not valid JSON: ${describe(err)}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw new Invalid(`${what} is not a JSON object`);
  return doc as Record<string, unknown>;
}

function stringMember(doc: Record<string, unknown>, name: string, what: string): string {
  const v = doc[name];
  if (typeof v !== 'string') throw new Invalid(`${what}: member "${name}" must be a string`);
  return v;
}

function timestamp(doc: Record<string, unknown>, name: string, what: string): number {
  const text = stringMember(doc, name, what);
  const ms = Date.parse(text);
  if (!Number.isFinite(ms)) throw new Invalid(`${what}: member "${name}" is not a timestamp`);
  return ms;
}

function uint64(text: string, what: string): bigint {
  if (!DECIMAL.test(text)) throw new Invalid(`${what} is not a decimal uint64`);
  const v = BigInt(text);
  if (v > MAX_SEQUENCE) throw new Invalid(`${what} is above 2^64-1`);
  return v;
}

/**
 * Persists each peer's last accepted bundle and sequence high-water mark in a state directory,
 * crash-safely, so the daemon can push last-known-good bundles before any fetch completes and keep
 * rollback protection across restarts.
 *
 * Writes for one trust domain are serialised; different trust domains proceed independently. The
 * store is meant to be the directory's only writer.
 *
 * @example
 * const store = new StateStore({ dir: '/var/lib/spiffe-broker' });
 * await store.init();
 * const { peers, problems } = await store.loadAll();
 * await store.saveAccepted(bundle, { etag: '"abc"' });
 */
export class StateStore {
  readonly dir: string;
  readonly #fs: StateFs;
  readonly #now: () => number;
  readonly #random: () => string;
  readonly #parse: BundleParseOptions;
  /** Per trust domain: the tail of its serialised operations. */
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Per trust domain: the high-water mark as last read or written (absent = not read yet). */
  readonly #hwm = new Map<string, bigint | undefined>();
  /** File stems found by the last {@link loadAll} (undefined before one). */
  #listedStems: Set<string> | undefined;

  constructor(opts: StateStoreOptions, deps: StateStoreDeps = {}) {
    if (typeof opts?.dir !== 'string' || opts.dir.length === 0) {
      throw new TypeError('StateStore: opts.dir must be a non-empty path');
    }
    this.dir = opts.dir;
    this.#parse = opts.parse ?? {};
    this.#fs = deps.fs ?? nodeStateFs;
    this.#now = deps.now ?? Date.now;
    this.#random = deps.randomSuffix ?? (() => randomBytes(4).toString('hex'));
  }

  /** Creates the directory (mode 0700) if needed, touching nothing in it. @throws RuntimeError `ERR_STATE_WRITE` */
  async ensureDir(): Promise<void> {
    try {
      await this.#fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new RuntimeError('ERR_STATE_WRITE', `state directory ${this.dir}: ${describe(err)}`, {
        cause: err,
      });
    }
  }

  /**
   * Creates the directory (mode 0700) if needed and removes temp files left by a crash mid-write
   * (`*.tmp-*`: never a state file, so never last-known-good).
   * @throws RuntimeError `ERR_STATE_WRITE` when the directory cannot be created or listed.
   */
  async init(): Promise<void> {
    try {
      await this.#fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      for (const name of await this.#fs.readdir(this.dir)) {
        if (/\.json\.tmp-[0-9a-z]+$/.test(name)) await this.#fs.unlink(join(this.dir, name));
      }
    } catch (err) {
      throw new RuntimeError('ERR_STATE_WRITE', `state directory ${this.dir}: ${describe(err)}`, {
        cause: err,
      });
    }
  }

  /**
   * Loads every peer's state. Never throws for a bad file: corrupt ones are quarantined and
   * reported in `problems`, and the peer is returned without that part.
   * @throws RuntimeError `ERR_STATE_READ` only when the directory itself cannot be listed.
   */
  async loadAll(): Promise<LoadAllResult> {
    let names: string[];
    try {
      names = await this.#fs.readdir(this.dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) {
        this.#listedStems = new Set();
        return { peers: [], problems: [] };
      }
      throw new RuntimeError('ERR_STATE_READ', `cannot list state directory ${this.dir}: ${describe(err)}`, {
        cause: err,
      });
    }
    const stems = new Set<string>();
    for (const n of names) {
      if (n.endsWith(BUNDLE_SUFFIX)) stems.add(n.slice(0, -BUNDLE_SUFFIX.length));
      else if (n.endsWith(SEQUENCE_SUFFIX)) stems.add(n.slice(0, -SEQUENCE_SUFFIX.length));
    }
    this.#listedStems = stems;
    const peers: PeerState[] = [];
    const problems: RuntimeError[] = [];
    for (const stem of [...stems].sort()) {
      const r = await this.#loadStem(stem, undefined, names);
      problems.push(...r.problems);
      if (r.state) peers.push(r.state);
    }
    peers.sort((a, b) => (a.trustDomain.name < b.trustDomain.name ? -1 : 1));
    return { peers, problems };
  }

  /** Loads one peer's state; bad files are quarantined and reported as in {@link loadAll}. */
  async load(trustDomain: TrustDomain): Promise<{ state: PeerState; problems: readonly RuntimeError[] }> {
    return this.#serial(trustDomain, async () => {
      const r = await this.#loadStem(stateFileStem(trustDomain), trustDomain, undefined);
      return { state: r.state ?? { trustDomain }, problems: r.problems };
    });
  }

  /**
   * Persists `bundle` as its trust domain's last-known-good, first raising the sequence
   * high-water mark to the bundle's sequence if that is higher (so every crash state has
   * high-water mark ≥ stored bundle's sequence). The store does not judge the bundle: policy
   * (rollback, key limits) runs before this.
   * @returns what a later load will return.
   * @throws RuntimeError `ERR_STATE_WRITE`; the previous files are then intact.
   */
  async saveAccepted(bundle: TrustBundle, meta: { readonly etag?: string } = {}): Promise<StoredBundle> {
    const td = bundle.trustDomain;
    return this.#serial(td, async () => {
      const current = await this.#currentHwm(td);
      if (current === undefined || bundle.sequence > current) {
        await this.#writeSequence(td, bundle.sequence, 'accepted');
      }
      const acceptedAt = this.#now();
      const base: Omit<BundleEnvelope, 'sha256'> = {
        version: 1,
        trustDomain: td.name,
        sequence: bundle.sequence.toString(),
        acceptedAt: new Date(acceptedAt).toISOString(),
        ...(meta.etag !== undefined ? { etag: meta.etag } : {}),
        bundle: marshalBundle(bundle),
      };
      const envelope: BundleEnvelope = { ...base, sha256: bundleChecksum(base) };
      await this.#atomicWrite(this.#path(td, BUNDLE_SUFFIX), `${JSON.stringify(envelope, null, 2)}\n`);
      const stored: { bundle: TrustBundle; acceptedAt: number; etag?: string } = {
        bundle,
        acceptedAt: Date.parse(base.acceptedAt),
      };
      if (meta.etag !== undefined) stored.etag = meta.etag;
      return stored;
    });
  }

  /** The persisted sequence high-water mark of a peer, or undefined when none is recorded. */
  async sequenceHighWaterMark(trustDomain: TrustDomain): Promise<bigint | undefined> {
    return this.#serial(trustDomain, () => this.#currentHwm(trustDomain));
  }

  /**
   * Operator entry point: sets a peer's sequence high-water mark to `to` (default 0: accept any
   * sequence next), e.g. after the peer legitimately restarted its sequence. The last-known-good
   * bundle is left as it is.
   * @returns the previous high-water mark.
   * @throws RuntimeError `ERR_STATE_WRITE`
   */
  async resetSequence(trustDomain: TrustDomain, to = 0n): Promise<{ previous: bigint | undefined }> {
    if (typeof to !== 'bigint' || to < 0n || to > MAX_SEQUENCE) {
      throw new TypeError('resetSequence: `to` must be a bigint in 0..2^64-1');
    }
    return this.#serial(trustDomain, async () => {
      const previous = await this.#currentHwm(trustDomain);
      await this.#writeSequence(trustDomain, to, 'reset');
      return { previous };
    });
  }

  /**
   * Removes a peer's state when the relationship ends (SPIFFE Federation §6.3: terminating a
   * relationship deletes the stored bundle). Missing files are fine.
   * @throws RuntimeError `ERR_STATE_WRITE`
   */
  async remove(trustDomain: TrustDomain): Promise<void> {
    return this.#serial(trustDomain, async () => {
      try {
        for (const suffix of [BUNDLE_SUFFIX, SEQUENCE_SUFFIX]) {
          try {
            await this.#fs.unlink(this.#path(trustDomain, suffix));
          } catch (err) {
            if (!isErrno(err, 'ENOENT')) throw err;
          }
        }
        await this.#syncDir();
      } catch (err) {
        throw new RuntimeError(
          'ERR_STATE_WRITE',
          `cannot remove state of ${trustDomain.name} in ${this.dir}: ${describe(err)}`,
          { cause: err },
        );
      }
      this.#hwm.set(trustDomain.name, undefined);
    });
  }

  #path(td: TrustDomain, suffix: string): string {
    return join(this.dir, stateFileStem(td) + suffix);
  }

  #serial<T>(td: TrustDomain, op: () => Promise<T>): Promise<T> {
    const key = td.name;
    const prev = this.#queues.get(key) ?? Promise.resolve();
    const next = prev.then(op, op);
    const tail = next.catch(() => undefined);
    this.#queues.set(key, tail);
    void tail.then(() => {
      if (this.#queues.get(key) === tail) this.#queues.delete(key);
    });
    return next;
  }

  async #currentHwm(td: TrustDomain): Promise<bigint | undefined> {
    if (this.#hwm.has(td.name)) return this.#hwm.get(td.name);
    // A peer with no file at loadAll() has none now (the directory is this process's alone, and
    // what it wrote since is in #hwm): no reads, which at a cold start of 10,000 new peers were
    // 20,000 failed opens. A listed peer missing from #hwm (its sequence file could not be read)
    // is read again below.
    if (this.#listedStems !== undefined && !this.#listedStems.has(stateFileStem(td))) {
      this.#hwm.set(td.name, undefined);
      return undefined;
    }
    const r = await this.#loadStem(stateFileStem(td), td, undefined);
    // A load quarantines bad files; what it settles on is now the truth.
    return r.state?.sequenceHighWaterMark;
  }

  async #writeSequence(td: TrustDomain, value: bigint, reason: 'accepted' | 'reset'): Promise<void> {
    const base: Omit<SequenceEnvelope, 'sha256'> = {
      version: 1,
      trustDomain: td.name,
      highWaterMark: value.toString(),
      updatedAt: new Date(this.#now()).toISOString(),
      reason,
    };
    const envelope: SequenceEnvelope = { ...base, sha256: sequenceChecksum(base) };
    await this.#atomicWrite(this.#path(td, SEQUENCE_SUFFIX), `${JSON.stringify(envelope, null, 2)}\n`);
    this.#hwm.set(td.name, value);
  }

  /**
   * Write-temp, fsync, close, rename, fsync-directory. On failure before the rename the temp file
   * is removed (best effort) and the target is untouched.
   */
  /**
   * Writes a small auxiliary file of the broker's (e.g. which SPIRE bundles it manages) in the
   * state directory with the same crash-safe protocol as bundles: temp file, fsync, rename, fsync
   * of the directory. `name` is a plain file name.
   * @throws RuntimeError `ERR_STATE_WRITE`
   */
  async writeAuxiliary(name: string, text: string): Promise<void> {
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.'))
      throw new TypeError(`bad auxiliary file name ${name}`);
    await this.#fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.#atomicWrite(join(this.dir, name), text);
  }

  /** Reads an auxiliary file; undefined when it does not exist. @throws RuntimeError `ERR_STATE_READ` */
  async readAuxiliary(name: string): Promise<string | undefined> {
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.'))
      throw new TypeError(`bad auxiliary file name ${name}`);
    try {
      return new TextDecoder().decode(await this.#fs.readFile(join(this.dir, name)));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw new RuntimeError('ERR_STATE_READ', `cannot read ${join(this.dir, name)}: ${describe(err)}`, {
        cause: err,
      });
    }
  }

  async #atomicWrite(target: string, text: string): Promise<void> {
    const tmp = `${target}.tmp-${this.#random()}`;
    let renamed = false;
    try {
      const handle = await this.#fs.open(tmp, 'wx', 0o600);
      try {
        await handle.writeFile(new TextEncoder().encode(text));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await this.#fs.rename(tmp, target);
      renamed = true;
      await this.#syncDir();
    } catch (err) {
      if (!renamed) {
        try {
          await this.#fs.unlink(tmp);
        } catch {
          // Left for init() to remove; the target is intact either way.
        }
      }
      throw new RuntimeError(
        'ERR_STATE_WRITE',
        renamed
          ? `wrote ${target} but could not fsync its directory (it may not survive a power loss): ${describe(err)}`
          : `cannot write ${target}: ${describe(err)}`,
        { cause: err },
      );
    }
  }

  async #syncDir(): Promise<void> {
    const dir = await this.#fs.open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /**
   * Loads both files of one stem. `expected` is the trust domain the caller asked for (undefined
   * from loadAll: the envelope names it, and it must map back to the same stem).
   */
  async #loadStem(
    stem: string,
    expected: TrustDomain | undefined,
    listing: string[] | undefined,
  ): Promise<{ state?: PeerState; problems: RuntimeError[] }> {
    const problems: RuntimeError[] = [];
    let td = expected;
    let lkg: StoredBundle | undefined;
    let hwm: bigint | undefined;
    let hwmKnown = false;

    const bundleFile = join(this.dir, stem + BUNDLE_SUFFIX);
    const b = await this.#readValidated(bundleFile, stem, td, listing, (text) => this.#decodeBundle(text));
    if (b.problem) problems.push(b.problem);
    if (b.value) {
      td = b.value.trustDomain;
      lkg = b.value.stored;
    }

    const seqFile = join(this.dir, stem + SEQUENCE_SUFFIX);
    const s = await this.#readValidated(seqFile, stem, td, listing, (text) => this.#decodeSequence(text));
    if (s.problem) problems.push(s.problem);
    if (s.value) {
      td = s.value.trustDomain;
      hwm = s.value.highWaterMark;
      hwmKnown = true;
    }
    if (!td) return { problems };
    if (!hwmKnown && lkg) hwm = lkg.bundle.sequence;
    // An unreadable (not corrupt) sequence file leaves the mark unknown: read it again next time.
    if (s.problem?.code !== 'ERR_STATE_READ') this.#hwm.set(td.name, hwm);
    if (!lkg && hwm === undefined) return { problems };
    const state: { trustDomain: TrustDomain; lastKnownGood?: StoredBundle; sequenceHighWaterMark?: bigint } =
      {
        trustDomain: td,
      };
    if (lkg) state.lastKnownGood = lkg;
    if (hwm !== undefined) state.sequenceHighWaterMark = hwm;
    return { state, problems };
  }

  /** Reads one file; ENOENT → nothing; invalid → quarantined + ERR_STATE_CORRUPT. */
  async #readValidated<T extends { trustDomain: TrustDomain }>(
    file: string,
    stem: string,
    expected: TrustDomain | undefined,
    listing: string[] | undefined,
    decode: (text: string) => T,
  ): Promise<{ value?: T; problem?: RuntimeError }> {
    let bytes: Uint8Array;
    try {
      bytes = await this.#fs.readFile(file);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return {};
      return {
        problem: new RuntimeError('ERR_STATE_READ', `cannot read ${file}: ${describe(err)}`, { cause: err }),
      };
    }
    let value: T;
    try {
      const limit = (this.#parse.maxBytes ?? 1024 * 1024) * ENVELOPE_SIZE_FACTOR + ENVELOPE_OVERHEAD;
      if (bytes.byteLength > limit)
        throw new Invalid(`file is ${bytes.byteLength} bytes; the limit is ${limit}`);
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        throw new Invalid('file is not UTF-8');
      }
      value = decode(text);
      if (expected && !value.trustDomain.equals(expected)) {
        throw new Invalid(`file names trust domain "${value.trustDomain.name}", expected "${expected.name}"`);
      }
      if (stateFileStem(value.trustDomain) !== stem) {
        throw new Invalid(
          `file names trust domain "${value.trustDomain.name}", which does not match its file name`,
        );
      }
    } catch (err) {
      if (!(err instanceof Invalid) && !(err instanceof BrokerError)) throw err;
      return { problem: await this.#quarantine(file, describe(err), listing) };
    }
    return { value };
  }

  #decodeBundle(text: string): { trustDomain: TrustDomain; stored: StoredBundle } {
    const what = 'bundle state file';
    const doc = objectOf(text, what);
    if (doc.version !== 1) throw new Invalid(`${what}: unsupported version ${JSON.stringify(doc.version)}`);
    const tdName = stringMember(doc, 'trustDomain', what);
    const td = TrustDomain.tryParse(tdName);
    if (!td) throw new Invalid(`${what}: "${tdName}" is not a trust domain name`);
    const sequence = stringMember(doc, 'sequence', what);
    const acceptedAtText = stringMember(doc, 'acceptedAt', what);
    const acceptedAt = timestamp(doc, 'acceptedAt', what);
    const etag = doc.etag === undefined ? undefined : stringMember(doc, 'etag', what);
    const bundleText = stringMember(doc, 'bundle', what);
    const sha = stringMember(doc, 'sha256', what);
    const base = {
      version: 1 as const,
      trustDomain: tdName,
      sequence,
      acceptedAt: acceptedAtText,
      ...(etag !== undefined ? { etag } : {}),
      bundle: bundleText,
    };
    if (bundleChecksum(base) !== sha) throw new Invalid(`${what}: checksum does not match its content`);
    // Never trust the file blindly: the same parser and limits as a fetched bundle.
    const { bundle } = parseBundle(td, bundleText, this.#parse);
    if (bundle.sequence !== uint64(sequence, `${what}: sequence`)) {
      throw new Invalid(
        `${what}: envelope sequence ${sequence} differs from the bundle's ${bundle.sequence}`,
      );
    }
    const stored: { bundle: TrustBundle; acceptedAt: number; etag?: string } = { bundle, acceptedAt };
    if (etag !== undefined) stored.etag = etag;
    return { trustDomain: td, stored };
  }

  #decodeSequence(text: string): { trustDomain: TrustDomain; highWaterMark: bigint } {
    const what = 'sequence state file';
    const doc = objectOf(text, what);
    if (doc.version !== 1) throw new Invalid(`${what}: unsupported version ${JSON.stringify(doc.version)}`);
    const tdName = stringMember(doc, 'trustDomain', what);
    const td = TrustDomain.tryParse(tdName);
    if (!td) throw new Invalid(`${what}: "${tdName}" is not a trust domain name`);
    const highWaterMark = stringMember(doc, 'highWaterMark', what);
    const updatedAt = stringMember(doc, 'updatedAt', what);
    timestamp(doc, 'updatedAt', what);
    const reason = doc.reason;
    if (reason !== 'accepted' && reason !== 'reset') throw new Invalid(`${what}: unknown reason`);
    const sha = stringMember(doc, 'sha256', what);
    if (sequenceChecksum({ version: 1, trustDomain: tdName, highWaterMark, updatedAt, reason }) !== sha) {
      throw new Invalid(`${what}: checksum does not match its content`);
    }
    return { trustDomain: td, highWaterMark: uint64(highWaterMark, `${what}: highWaterMark`) };
  }

  /** Renames a bad file aside (never deletes it) and returns the ERR_STATE_CORRUPT to report. */
  async #quarantine(file: string, reason: string, listing: string[] | undefined): Promise<RuntimeError> {
    let names = listing;
    if (!names) {
      try {
        names = await this.#fs.readdir(this.dir);
      } catch {
        names = [];
      }
    }
    const base = `${file}.corrupt-${compactTime(this.#now())}`;
    const taken = new Set(names.map((n) => join(this.dir, n)));
    let target = base;
    for (let i = 1; taken.has(target); i++) target = `${base}-${i}`;
    try {
      await this.#fs.rename(file, target);
      names.push(target.slice(this.dir.length + 1));
      await this.#syncDir();
    } catch (err) {
      return new RuntimeError(
        'ERR_STATE_CORRUPT',
        `${file} is corrupt (${reason}) and could not be quarantined: ${describe(err)}`,
        { cause: err },
      );
    }
    return new RuntimeError('ERR_STATE_CORRUPT', `${file} is corrupt (${reason}); moved to ${target}`);
  }
}
