import { bundlesEqual } from '../../core/bundle/diff.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { BrokerError, SpireError } from '../../errors.js';
import { type Clock, isAbort } from '../../platform/clock.js';
import { Trigger } from '../../platform/trigger.js';
import type { DesiredBundles, Sink, SinkFailure, SinkReport } from './sink.js';

/** SPIRE's BatchDeleteFederatedBundle modes. */
export type DeleteMode = 'restrict' | 'dissociate' | 'delete';

/** One item of a Batch* answer: the call succeeded while items may fail. */
export interface BatchItemResult {
  readonly trustDomain: string;
  readonly ok: boolean;
  /** google.rpc.Code of the item (0 = OK). */
  readonly code: number;
  readonly message: string;
}

/** The slice of SPIRE's server API a sync needs (the daemon adapts the gRPC client to it). */
export interface SpireFederationApi {
  /** Every federated bundle the server holds (all pages). */
  listFederatedBundles(signal?: AbortSignal): Promise<TrustBundle[]>;
  /**
   * Only the trust domain and sequence number of every federated bundle (optional): when
   * present, most periodic resyncs are this cheap check, and a full pass runs only when it shows
   * a change or every {@link SpireSyncDeps.fullResyncEvery}th period.
   */
  listFederatedBundleSequences?(signal?: AbortSignal): Promise<ReadonlyMap<string, bigint>>;
  /** Trust domains SPIRE federates with through its own federation relationships. */
  listFederationRelationships(signal?: AbortSignal): Promise<string[]>;
  batchSetFederatedBundle(bundles: readonly TrustBundle[], signal?: AbortSignal): Promise<BatchItemResult[]>;
  batchDeleteFederatedBundle(
    trustDomains: readonly string[],
    mode: DeleteMode,
    signal?: AbortSignal,
  ): Promise<BatchItemResult[]>;
}

/** Where a sync remembers which federated bundles it manages in its server (persisted). */
export interface ManagedSetStore {
  load(server: string): Promise<Set<string>>;
  save(server: string, managed: ReadonlySet<string>): Promise<void>;
}

/** Per-trust-domain sync state of one server, for status. */
export interface TrustDomainSyncState {
  readonly synced: boolean;
  /** The sequence the server holds for this trust domain (decimal), when known. */
  readonly sequence?: string;
  readonly error?: { readonly code: string; readonly message: string };
  /**
   * For a revocation SPIRE refused in `restrict` mode: how many registration entries federate
   * with the trust domain (from SPIRE's answer), when it said.
   */
  readonly blockingEntries?: number;
}

/** What a reconcile would do to one server (see {@link SpireServerSync.plan}). */
export interface SyncPlan {
  /** Trust domains the broker manages in this server (mutable: the sync updates it). */
  readonly managed: Set<string>;
  /** What the server holds now, by trust domain. */
  readonly actual: ReadonlyMap<string, TrustBundle>;
  /** Trust domains of SPIRE's own federation relationships, sorted. */
  readonly relationships: readonly string[];
  /** Allowlisted trust domains SPIRE federates with by its own relationships: left alone. */
  readonly conflicts: readonly string[];
  /** Desired bundles the server already holds identically. */
  readonly inSync: ReadonlyMap<string, TrustBundle>;
  /** Bundles to write, with what the server holds now (absent: create). */
  readonly toSet: readonly { readonly bundle: TrustBundle; readonly current?: TrustBundle }[];
  /** Managed bundles no longer desired and still present: to delete (revocation). */
  readonly revoke: readonly string[];
  /** Allowlisted trust domains with no bundle held: the server's copy is left as it is. */
  readonly retained: readonly string[];
  /** Managed bundles no longer desired that are already gone. */
  readonly alreadyGone: readonly string[];
  /** Present, not desired, not managed, not SPIRE's own: drift. */
  readonly drift: readonly string[];
}

/** One server's sync status. */
export interface ServerSyncStatus {
  readonly name: string;
  readonly reachable: boolean;
  readonly lastSync?: number;
  readonly lastError?: { readonly code: string; readonly message: string };
  readonly trustDomains: ReadonlyMap<string, TrustDomainSyncState>;
  /** Federated bundles present in the server that nothing asked for (not ours, not SPIRE's own relationships). */
  readonly drift: readonly string[];
  /** Allowlisted trust domains SPIRE also federates with itself: left alone. */
  readonly conflicts: readonly string[];
  /**
   * Trust domains whose bundles the broker wrote to this server and still answers for (sorted);
   * undefined before the first reconcile. A revoked peer stays here until its deletion was
   * confirmed by reading the server back — status says REVOKED only then.
   */
  readonly managed?: readonly string[];
}

/** What a sync reports as it works (metrics, audit, propagation tracking). */
export interface SpireSyncObserver {
  synced(server: string, result: 'ok' | 'partial' | 'error', durationMs: number): void;
  written(server: string, bundle: TrustBundle, result: BatchItemResult): void;
  deleted(server: string, trustDomain: string, reason: 'revoked' | 'drift', result: BatchItemResult): void;
  drift(server: string, trustDomains: readonly string[]): void;
  conflict(server: string, trustDomains: readonly string[]): void;
}

export interface SpireSyncDeps {
  readonly clock: Clock;
  readonly api: SpireFederationApi;
  /** The bundles this server should hold, by trust domain (peers ACTIVE or STALE aimed at it). */
  readonly desired: () => ReadonlyMap<string, TrustBundle>;
  /**
   * Allowlisted trust domains for which no bundle is held yet: whatever the server holds for them
   * is left as it is — neither revoked nor reported as drift. Default none.
   */
  readonly retained?: () => ReadonlySet<string>;
  readonly managed: ManagedSetStore;
  readonly observer?: Partial<SpireSyncObserver>;
  /** Delete drift (federated bundles the allowlist does not name). Default false: report only. */
  readonly enforce?: boolean;
  /** BatchDelete mode for revocation and enforced drift. Default 'restrict' (see docs/design.md). */
  readonly deleteMode?: DeleteMode;
  /**
   * Resync period even without changes, ms. Default 30 s. With
   * {@link SpireFederationApi.listFederatedBundleSequences} a period's resync is a check of every
   * trust domain and sequence number against what the last pass left; a difference (a bundle
   * deleted, added or rewritten by hand, a new SPIRE federation relationship) runs a full pass.
   */
  readonly resyncMs?: number;
  /**
   * Every this many resync periods the resync is a full pass (every bundle read and compared)
   * even when the check shows nothing: content edited in SPIRE under an unchanged sequence number
   * is repaired within `resyncMs × fullResyncEvery` (default 10: five minutes). 1: always full.
   */
  readonly fullResyncEvery?: number;
  /**
   * Coalescing of change triggers, ms: after a trigger the sync waits until no further trigger came
   * for this long (default 5) — a burst of accepted bundles, many peers rotating at once, goes
   * out in ONE BatchSet — but never longer than {@link SpireSyncDeps.maxDebounceMs} in all.
   */
  readonly debounceMs?: number;
  /** Upper bound of the coalescing wait, so a steady stream of triggers cannot starve SPIRE, ms. Default 250. */
  readonly maxDebounceMs?: number;
  /**
   * True while more bundles are on their way at once — peers awaiting their first fetch during a
   * cold start. A change then waits for them (up to {@link SpireSyncDeps.maxSettleMs}) instead of
   * going out after the short coalescing wait: a cold start of N bundles becomes about
   * ceil(N / 4,400) BatchSets per server instead of one every 250 ms while bundles trickle in.
   * The first pass (last-known-good bundles at start) never waits. Default: never settling.
   */
  readonly settling?: () => boolean;
  /** Longest wait for {@link SpireSyncDeps.settling}, ms. Default 30 s. */
  readonly maxSettleMs?: number;
  /**
   * While settling, a pass still runs once this many changes (triggers) have gathered since the
   * last one: a full BatchSet's worth (~4,400 ordinary bundles fit the 3 MiB budget). Default 4,000.
   */
  readonly settleBatch?: number;
  /**
   * Largest estimated BatchSetFederatedBundle request, bytes; a larger change goes out in several
   * calls. Default {@link DEFAULT_MAX_BATCH_BYTES} (3 MiB, under gRPC's 4 MiB message limit).
   */
  readonly maxBatchBytes?: number;
  /** Retry backoff after a failed sync: base and cap, ms. Defaults 500 and 30 s. */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
}

const GRPC_NOT_FOUND = 5;
const GRPC_FAILED_PRECONDITION = 9;

/**
 * The number of registration entries SPIRE names when `restrict` mode refuses a delete
 * ("cannot delete bundle; federated with 2 registration entries"), if it does.
 */
export function blockingEntryCount(message: string): number | undefined {
  const m = /federated with (\d+) registration entr/i.exec(message);
  return m ? Number(m[1]) : undefined;
}

/** The operator-facing explanation of a revocation SPIRE refused. */
function blockedRevocation(
  server: string,
  td: string,
  r: BatchItemResult,
  mode: DeleteMode,
): TrustDomainSyncState {
  const entries = blockingEntryCount(r.message);
  const who =
    entries === undefined
      ? 'registration entries federate with it'
      : `${entries} registration ${entries === 1 ? 'entry federates' : 'entries federate'} with it`;
  const fix =
    r.code === GRPC_FAILED_PRECONDITION || entries !== undefined
      ? `; remove ${td} from those entries' federatesWith, or set reconcile.deleteMode to dissociate or delete`
      : '';
  return {
    synced: false,
    error: {
      code: 'ERR_SPIRE_REVOCATION_BLOCKED',
      message: `SPIRE server ${server} refused to delete the bundle of ${td} (${mode} mode): ${who}${fix} (SPIRE: ${r.message}, gRPC code ${r.code})`,
    },
    ...(entries !== undefined ? { blockingEntries: entries } : {}),
  };
}

/**
 * Largest estimated BatchSetFederatedBundle request, bytes: SPIRE's gRPC server (like grpc-js and
 * grpc-go by default) refuses messages over 4 MiB with RESOURCE_EXHAUSTED, and its answer echoes
 * every bundle, so stay well below. At ~0.7 KiB per bundle (one CA, two JWT keys) that is ~4,400
 * bundles in one call.
 */
export const DEFAULT_MAX_BATCH_BYTES = 3 * 1024 * 1024;

/**
 * A generous estimate of a bundle's protobuf size in a BatchSet request (its DER certificates and
 * JWT keys, names and per-field framing), in bytes.
 */
export function bundleWireSizeEstimate(bundle: TrustBundle): number {
  let n = 64 + bundle.trustDomain.name.length;
  for (const a of bundle.x509Authorities) n += a.der.byteLength + 16;
  for (const k of bundle.jwtAuthorities.values()) n += k.spki.byteLength + k.kid.length + 32;
  return n;
}

/** Splits `bundles`, in order, into runs whose estimated size stays within `maxBytes` (at least one each). */
export function sizedBatches(bundles: readonly TrustBundle[], maxBytes: number): TrustBundle[][] {
  const out: TrustBundle[][] = [];
  let current: TrustBundle[] = [];
  let size = 0;
  for (const b of bundles) {
    const n = bundleWireSizeEstimate(b);
    if (current.length > 0 && size + n > maxBytes) {
      out.push(current);
      current = [];
      size = 0;
    }
    current.push(b);
    size += n;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** A comparable text of a server's federated bundles (trust domain and sequence) and relationships. */
function baselineOf(sequences: ReadonlyMap<string, bigint>, relationships: readonly string[]): string {
  const lines = [...sequences].map(([td, seq]) => `${td}=${seq}`).sort();
  return `${lines.join('\n')}\n--\n${[...relationships].sort().join('\n')}`;
}

function codeOf(err: unknown): { code: string; message: string } {
  if (err instanceof BrokerError) return { code: err.code, message: err.message };
  return { code: 'ERR_SPIRE_RPC', message: err instanceof Error ? err.message : String(err) };
}

/**
 * Converges one SPIRE server's federated bundles to the desired set, level-triggered:
 * list what the server holds, write every changed bundle in ONE BatchSetFederatedBundle, delete
 * revoked bundles it manages (and, with `enforce`, drift), then sleep until a trigger, the
 * periodic resync, or a retry after failure. One server's failures never block another's: each
 * server has its own sync and its own loop.
 */
export class SpireServerSync implements Sink {
  readonly name: string;
  readonly #deps: SpireSyncDeps;
  #managed: Set<string> | undefined;
  /** Pending work and the wake-up of the loop's sleep. */
  readonly #wakeup = new Trigger();
  /** Counts {@link SpireServerSync.trigger} calls, so the coalescing wait can tell a quiet moment. */
  #triggers = 0;
  /** {@link SpireServerSync.#triggers} when the last pass started. */
  #triggersAtPass = 0;
  #failures = 0;
  #reachable = false;
  #lastSync: number | undefined;
  #lastError: { code: string; message: string } | undefined;
  #tdState = new Map<string, TrustDomainSyncState>();
  #drift: readonly string[] = [];
  #conflicts: readonly string[] = [];
  #idle: (() => void)[] = [];
  /** Passes started so far, and callers waiting for a pass that starts after they asked. */
  #passes = 0;
  #passWaiters: { after: number; resolve: () => void }[] = [];
  /**
   * What the server holds after the last fully successful pass, as `td=sequence` lines and its
   * SPIRE-owned relationships; undefined when unknown (no such pass yet, or one failed since).
   */
  #baseline: string | undefined;
  /** Periodic checks that found nothing to do since the last full pass. */
  #quietChecks = 0;

  constructor(name: string, deps: SpireSyncDeps) {
    this.name = name;
    this.#deps = deps;
    this.#wakeup.fire(); // the first pass runs at once
  }

  /** Asks for a reconcile soon (coalesced). Call on every desired-state change. */
  trigger(): void {
    this.#triggers++;
    this.#wakeup.fire();
  }

  status(): ServerSyncStatus {
    return {
      name: this.name,
      reachable: this.#reachable,
      ...(this.#lastSync !== undefined ? { lastSync: this.#lastSync } : {}),
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
      trustDomains: new Map(this.#tdState),
      drift: [...this.#drift],
      conflicts: [...this.#conflicts],
      ...(this.#managed ? { managed: [...this.#managed].sort() } : {}),
    };
  }

  /**
   * Triggers a reconcile and resolves when a pass that started after this call has finished,
   * whether it succeeded or failed (`POST /v1/reconcile`, `spiffe-broker reconcile`).
   */
  reconcileSoon(): Promise<void> {
    const after = this.#passes;
    const done = new Promise<void>((resolve) => this.#passWaiters.push({ after, resolve }));
    this.trigger();
    return done;
  }

  /** Resolves once the sync has no pending work and its last reconcile succeeded (tests, readiness). */
  whenIdle(): Promise<void> {
    if (!this.#wakeup.pending && this.#failures === 0 && this.#lastSync !== undefined)
      return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  async run(signal: AbortSignal): Promise<void> {
    const { clock } = this.#deps;
    while (!signal.aborted) {
      if (this.#wakeup.take()) {
        const pass = ++this.#passes;
        this.#triggersAtPass = this.#triggers;
        const ok = await this.reconcileOnce(signal).catch((err: unknown) => {
          if (signal.aborted || isAbort(err, signal)) return true;
          throw err;
        });
        this.#passWaiters = this.#passWaiters.filter((w) => {
          if (w.after >= pass) return true;
          w.resolve();
          return false;
        });
        if (signal.aborted) return;
        if (ok) {
          this.#failures = 0;
          if (!this.#wakeup.pending) for (const resolve of this.#idle.splice(0)) resolve();
        } else {
          this.#failures++;
        }
      }
      // A trigger that arrived during the pass: go again as soon as its burst is over (unless
      // backing off).
      if (this.#wakeup.pending && this.#failures === 0) {
        await this.#quietMoment(signal);
        continue;
      }
      const delay =
        this.#failures > 0
          ? Math.min(
              this.#deps.retryMaxMs ?? 30_000,
              (this.#deps.retryBaseMs ?? 500) * 2 ** Math.min(this.#failures - 1, 16),
            )
          : (this.#deps.resyncMs ?? 30_000);
      // Backing off: a trigger that came during the failed pass does not cut the wait short.
      if (this.#failures > 0) this.#wakeup.take();
      const seen = this.#triggers;
      try {
        await this.#wakeup.wait(clock, delay, signal);
      } catch {
        return; // aborted
      }
      // Woken by trigger(): let the burst finish, then reconcile it all at once. Otherwise the
      // period passed: a periodic resync, or the retry after a failure.
      if (this.#triggers !== seen) await this.#quietMoment(signal);
      else if (this.#failures === 0 && (await this.#unchangedSinceLastPass(signal))) continue;
      if (signal.aborted) return;
      this.#wakeup.fire();
    }
  }

  /**
   * The cheap periodic resync: true when the server still holds exactly the trust domains and
   * sequence numbers the last successful pass left (and SPIRE's own relationships are the same),
   * so the full pass can be skipped — except every `fullResyncEvery`th period. A full list of
   * 1,000 bundles from four servers every 30 s was most of an otherwise idle broker's CPU at
   * 1,000 peers (bench/scale.bench.ts); this reads ~40 bytes a bundle and parses no certificate.
   * Any failure answers false: the full pass then reports it.
   */
  async #unchangedSinceLastPass(signal: AbortSignal): Promise<boolean> {
    const { api, clock } = this.#deps;
    const every = this.#deps.fullResyncEvery ?? 10;
    if (!api.listFederatedBundleSequences || this.#baseline === undefined) return false;
    if (this.#quietChecks >= every - 1 || this.#wakeup.pending) return false;
    try {
      const [sequences, relationships] = await Promise.all([
        api.listFederatedBundleSequences(signal),
        api.listFederationRelationships(signal),
      ]);
      if (baselineOf(sequences, relationships) !== this.#baseline || this.#wakeup.pending) return false;
    } catch {
      return false;
    }
    this.#quietChecks++;
    this.#lastSync = clock.now();
    return true;
  }

  /**
   * Waits until no trigger came for `debounceMs`, or `maxDebounceMs` passed since the call. Only
   * timing: what is written is read from `desired()` when the pass runs (level-triggered).
   */
  async #quietMoment(signal: AbortSignal): Promise<void> {
    const { clock } = this.#deps;
    const quiet = this.#deps.debounceMs ?? 5;
    const start = clock.now();
    const deadline = start + (this.#deps.maxDebounceMs ?? 250);
    const settleDeadline = start + (this.#deps.maxSettleMs ?? 30_000);
    for (;;) {
      const seen = this.#triggers;
      // While peers still await their first fetch, more is coming: keep collecting.
      const settling =
        this.#deps.settling?.() === true &&
        this.#triggers - this.#triggersAtPass < (this.#deps.settleBatch ?? 4000);
      const left = (settling ? settleDeadline : deadline) - clock.now();
      if (left <= 0 || signal.aborted) return;
      await clock
        .sleep(Math.min(settling ? Math.max(quiet, 50) : quiet, left), signal)
        .catch(() => undefined);
      if (this.#triggers === seen && !settling) return;
    }
  }

  /**
   * What a reconcile would do now, computed from the server's current contents without changing
   * anything (`spiffe-broker diff`; the first step of every reconcile).
   */
  async plan(signal?: AbortSignal, want: DesiredBundles = this.#want()): Promise<SyncPlan> {
    const { api } = this.#deps;
    this.#managed ??= await this.#deps.managed.load(this.name);
    const managed = this.#managed;
    const [actualList, relationships] = await Promise.all([
      api.listFederatedBundles(signal),
      api.listFederationRelationships(signal),
    ]);
    const actual = new Map(actualList.map((b) => [b.trustDomain.name, b]));
    const spireOwned = new Set(relationships);
    const desired = want.bundles;
    const retained = want.retained;
    // SPIRE's own federation relationships win: report, never fight them.
    const conflicts = [...desired.keys()].filter((td) => spireOwned.has(td)).sort();
    const inSync = new Map<string, TrustBundle>();
    const toSet: { bundle: TrustBundle; current?: TrustBundle }[] = [];
    for (const [td, bundle] of desired) {
      if (spireOwned.has(td)) continue;
      const have = actual.get(td);
      if (have && bundlesEqual(have, bundle)) inSync.set(td, have);
      else toSet.push(have ? { bundle, current: have } : { bundle });
    }
    // Revocation is for peers that LEFT the allowlist, never for one still allowlisted whose
    // bundle is not held (a restart that lost its state while the peer is down).
    const revoked = [...managed].filter((td) => !desired.has(td) && !retained.has(td) && !spireOwned.has(td));
    // Drift: present, not desired, not ours, not SPIRE's own relationship.
    const drift = [...actual.keys()]
      .filter((td) => !desired.has(td) && !retained.has(td) && !managed.has(td) && !spireOwned.has(td))
      .sort();
    return {
      managed,
      actual,
      relationships: [...spireOwned].sort(),
      conflicts,
      inSync,
      toSet,
      retained: [...retained].filter((td) => actual.has(td) && !spireOwned.has(td)).sort(),
      revoke: revoked.filter((td) => actual.has(td)),
      alreadyGone: revoked.filter((td) => !actual.has(td)),
      drift,
    };
  }

  /** What the server should hold now, from the routing this sync was given. */
  #want(): DesiredBundles {
    return { bundles: this.#deps.desired(), retained: this.#deps.retained?.() ?? new Set<string>() };
  }

  /** One reconcile pass against the current desired set. False when anything failed (the loop retries). */
  async reconcileOnce(signal?: AbortSignal): Promise<boolean> {
    return (await this.apply(this.#want(), signal)).ok;
  }

  /**
   * {@link Sink.apply}: one reconcile pass — write every changed bundle, revoke what this broker
   * manages and no longer wants (confirmed by reading back), report (and, with `enforce`, delete)
   * drift. Never rejects: an unreachable server is a report with `ok: false` and the status's
   * `lastError`.
   */
  async apply(want: DesiredBundles, signal?: AbortSignal): Promise<SinkReport> {
    const { api, clock } = this.#deps;
    const started = clock.now();
    const observer = this.#deps.observer ?? {};
    let allOk = true;
    const written: string[] = [];
    const removed: string[] = [];
    const failed: SinkFailure[] = [];
    try {
      const plan = await this.plan(signal, want);
      const { managed, actual } = plan;
      this.#reachable = true;
      if (plan.conflicts.join() !== this.#conflicts.join() && plan.conflicts.length > 0) {
        observer.conflict?.(this.name, plan.conflicts);
      }
      this.#conflicts = plan.conflicts;
      const nextState = new Map<string, TrustDomainSyncState>();
      let managedChanged = false;
      for (const [td, have] of plan.inSync) {
        nextState.set(td, { synced: true, sequence: have.sequence.toString() });
        // Identical to what the allowlist asks for: ours to manage (and revoke) from now on.
        if (!managed.has(td)) {
          managed.add(td);
          managedChanged = true;
        }
      }
      const toSet = plan.toSet.map((c) => c.bundle);
      if (toSet.length > 0) {
        // One BatchSetFederatedBundle carries every changed bundle (upsert, full replace) — split
        // only when it would not fit in one gRPC message (SPIRE refuses requests over 4 MiB).
        const results: BatchItemResult[] = [];
        for (const chunk of sizedBatches(toSet, this.#deps.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES)) {
          results.push(...(await api.batchSetFederatedBundle(chunk, signal)));
        }
        toSet.forEach((bundle, i) => {
          const r = results[i] ?? {
            trustDomain: bundle.trustDomain.name,
            ok: false,
            code: 13,
            message: 'no result for this item',
          };
          observer.written?.(this.name, bundle, r);
          const td = bundle.trustDomain.name;
          if (r.ok) {
            written.push(td);
            nextState.set(td, { synced: true, sequence: bundle.sequence.toString() });
            if (!managed.has(td)) {
              managed.add(td);
              managedChanged = true;
            }
          } else {
            allOk = false;
            const prev = actual.get(td);
            nextState.set(td, {
              synced: false,
              ...(prev ? { sequence: prev.sequence.toString() } : {}),
              error: { code: 'ERR_SPIRE_BATCH_ITEM', message: `${r.message} (gRPC code ${r.code})` },
            });
          }
        });
      }

      // Revocation: bundles we manage that are no longer desired.
      const revokeNow = plan.revoke;
      for (const td of plan.alreadyGone) {
        managed.delete(td);
        managedChanged = true;
      }
      if (revokeNow.length > 0) {
        const results = await api.batchDeleteFederatedBundle(
          revokeNow,
          this.#deps.deleteMode ?? 'restrict',
          signal,
        );
        revokeNow.forEach((td, i) => {
          const r = results[i] ?? {
            trustDomain: td,
            ok: false,
            code: 13,
            message: 'no result for this item',
          };
          observer.deleted?.(this.name, td, 'revoked', r);
          if (!r.ok && r.code !== GRPC_NOT_FOUND) {
            allOk = false;
            nextState.set(td, blockedRevocation(this.name, td, r, this.#deps.deleteMode ?? 'restrict'));
          }
        });
        // Confirm by reading back: a revoked bundle must really be gone before it stops being
        // ours to answer for (and before status may call it revoked).
        const after = new Set((await api.listFederatedBundles(signal)).map((b) => b.trustDomain.name));
        for (const td of revokeNow) {
          if (!after.has(td)) {
            removed.push(td);
            managed.delete(td);
            managedChanged = true;
          } else if (!nextState.has(td)) {
            allOk = false;
            nextState.set(td, {
              synced: false,
              error: {
                code: 'ERR_SPIRE_REVOCATION_BLOCKED',
                message: `SPIRE server ${this.name} still holds the bundle of ${td} after BatchDeleteFederatedBundle answered OK`,
              },
            });
          }
        }
      }

      const drift = plan.drift;
      if (drift.join() !== this.#drift.join() && drift.length > 0) observer.drift?.(this.name, drift);
      this.#drift = drift;
      if (drift.length > 0 && this.#deps.enforce) {
        const results = await api.batchDeleteFederatedBundle(
          drift,
          this.#deps.deleteMode ?? 'restrict',
          signal,
        );
        drift.forEach((td, i) => {
          const r = results[i] ?? {
            trustDomain: td,
            ok: false,
            code: 13,
            message: 'no result for this item',
          };
          observer.deleted?.(this.name, td, 'drift', r);
          if (!r.ok && r.code !== GRPC_NOT_FOUND) {
            allOk = false;
            failed.push({ trustDomain: td, code: 'ERR_SPIRE_BATCH_ITEM', message: `drift: ${r.message}` });
          } else removed.push(td);
        });
        this.#drift = [];
      }

      if (managedChanged) await this.#deps.managed.save(this.name, managed);
      // What the server holds now, for the cheap periodic check: what was listed, with this
      // pass's writes and deletions applied. Only a pass that fully succeeded sets it.
      if (allOk) {
        const held = new Map<string, bigint>();
        for (const [td, b] of actual) held.set(td, b.sequence);
        for (const bundle of toSet) held.set(bundle.trustDomain.name, bundle.sequence);
        for (const td of removed) held.delete(td);
        this.#baseline = baselineOf(held, plan.relationships);
        this.#quietChecks = 0;
      } else this.#baseline = undefined;
      this.#tdState = nextState;
      this.#lastSync = clock.now();
      this.#lastError = allOk
        ? undefined
        : { code: 'ERR_SPIRE_BATCH_ITEM', message: 'some items failed; retrying' };
      observer.synced?.(this.name, allOk ? 'ok' : 'partial', clock.now() - started);
      for (const [td, st] of nextState) if (st.error) failed.push({ trustDomain: td, ...st.error });
      return { ok: allOk, written, removed, failed };
    } catch (err) {
      this.#baseline = undefined;
      if (signal?.aborted) throw err;
      this.#reachable = !(
        err instanceof SpireError &&
        (err.code === 'ERR_SPIRE_UNAVAILABLE' || err.code === 'ERR_SPIRE_DEADLINE')
      );
      this.#lastError = codeOf(err);
      observer.synced?.(this.name, 'error', clock.now() - started);
      return { ok: false, written, removed, failed: [{ trustDomain: '*', ...this.#lastError }] };
    }
  }
}
