import type { BundleDiff } from '../../core/bundle/diff.js';
import { MAX_LOGGED_MESSAGE_CHARS, untrustedText } from '../../untrusted-text.js';
import type { AuditData, AuditRecord, AuditRecordType } from './record.js';

/** Where records go: an {@link AuditWriter} in the daemon, an array in tests. */
export interface AuditSink {
  append(type: AuditRecordType, data: AuditData): Promise<AuditRecord | undefined>;
}

/** Bounds and escapes a message that may quote what a peer or a server sent (untrusted-text.ts). */
function safe(message: string): string {
  return untrustedText(message, MAX_LOGGED_MESSAGE_CHARS);
}

/** A trust domain as records name it (a TrustDomain or its name). */
type TdName = string | { readonly name: string };

function tdName(td: TdName): string {
  return typeof td === 'string' ? td : td.name;
}

/**
 * The audit trail's typed façade: one intent-named method per event, so call sites never build
 * record payloads by hand and every record of a type has the same shape (docs/audit.md lists
 * them). Each method resolves once the record is durable.
 */
export class AuditTrail {
  readonly #sink: AuditSink;

  constructor(sink: AuditSink) {
    this.#sink = sink;
  }

  /** A peer's bundle was accepted: sequence and the authorities it added and removed. */
  bundleAccepted(e: {
    trustDomain: TdName;
    sequence: bigint;
    diff: BundleDiff;
  }): Promise<AuditRecord | undefined> {
    return this.#sink.append('bundle-accepted', {
      trustDomain: tdName(e.trustDomain),
      sequence: e.sequence.toString(),
      x509Added: e.diff.x509Added,
      x509Removed: e.diff.x509Removed,
      jwtAdded: e.diff.jwtAdded,
      jwtRemoved: e.diff.jwtRemoved,
      jwtChanged: e.diff.jwtChanged,
    });
  }

  /**
   * A peer's bundle (or fetch) was refused, with the coded reason; `suppressed` counts identical
   * refusals not recorded since the last record (repeat-limiter.ts), written only when non-zero.
   */
  bundleRefused(e: {
    trustDomain: TdName;
    code: string;
    message: string;
    suppressed?: number;
  }): Promise<AuditRecord | undefined> {
    return this.#sink.append('bundle-refused', {
      trustDomain: tdName(e.trustDomain),
      code: e.code,
      message: safe(e.message),
      ...(e.suppressed ? { suppressed: e.suppressed } : {}),
    });
  }

  /** A write to a SPIRE server (set, update or delete a federated bundle) and its result. */
  spireWrite(e: {
    server: string;
    trustDomain: TdName;
    operation: 'set' | 'delete';
    result: 'ok' | 'error';
    code?: string;
    message?: string;
  }): Promise<AuditRecord | undefined> {
    return this.#sink.append('spire-write', {
      server: e.server,
      trustDomain: tdName(e.trustDomain),
      operation: e.operation,
      result: e.result,
      ...(e.code !== undefined ? { code: e.code } : {}),
      ...(e.message !== undefined ? { message: safe(e.message) } : {}),
    });
  }

  /** A SPIRE server holds something else than the accepted bundle (and whether it was repaired). */
  drift(e: {
    server: string;
    trustDomain: TdName;
    detail: string;
    repaired: boolean;
  }): Promise<AuditRecord | undefined> {
    return this.#sink.append('drift', {
      server: e.server,
      trustDomain: tdName(e.trustDomain),
      detail: safe(e.detail),
      repaired: e.repaired,
    });
  }

  /** A peer's trust was revoked (removed from the allowlist, or it published an empty bundle). */
  revocation(e: { trustDomain: TdName; code: string; message: string }): Promise<AuditRecord | undefined> {
    return this.#sink.append('revocation', {
      trustDomain: tdName(e.trustDomain),
      code: e.code,
      message: safe(e.message),
    });
  }

  /** A new allowlist took effect: its version and the trust domains added, removed and changed. */
  /** A new allowlist was refused (invalid, unreadable, a referenced file missing): the previous one stays in force. */
  allowlistRefused(e: {
    code: string;
    message: string;
    keptVersion?: string;
  }): Promise<AuditRecord | undefined> {
    return this.#sink.append('allowlist-refused', {
      code: e.code,
      message: safe(e.message),
      keptVersion: e.keptVersion ?? null,
    });
  }

  allowlistChanged(e: {
    version: string;
    previousVersion?: string;
    added: readonly TdName[];
    removed: readonly TdName[];
    changed: readonly TdName[];
  }): Promise<AuditRecord | undefined> {
    return this.#sink.append('allowlist-change', {
      version: e.version,
      previousVersion: e.previousVersion ?? null,
      added: e.added.map(tdName),
      removed: e.removed.map(tdName),
      changed: e.changed.map(tdName),
    });
  }

  /** An operator reset a peer's sequence baseline (policy resetSequenceBaseline). */
  sequenceReset(e: {
    trustDomain: TdName;
    previousSequence: bigint;
    operator?: string;
  }): Promise<AuditRecord | undefined> {
    return this.#sink.append('sequence-reset', {
      trustDomain: tdName(e.trustDomain),
      previousSequence: e.previousSequence.toString(),
      operator: e.operator ?? null,
    });
  }
}
