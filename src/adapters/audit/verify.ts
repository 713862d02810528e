import type { KeyObject } from 'node:crypto';
import {
  AUDIT_GENESIS,
  type AuditRecord,
  auditKeyId,
  decodePublicKey,
  decodeRecordLine,
  isLineProblem,
  sha256Hex,
} from './record.js';

/** The outcome of {@link verifyAuditLog}. */
export type AuditVerification =
  | {
      readonly ok: true;
      /** Every record, in order. */
      readonly records: readonly AuditRecord[];
      /** The key the records were checked with. */
      readonly keyId: string;
      /** `given`: the caller's key. `declared`: the key in the log's first record (consistency only). */
      readonly keySource: 'given' | 'declared';
    }
  | {
      readonly ok: false;
      /** 1-based line number of the first record that does not verify. */
      readonly brokenAt: number;
      readonly code: 'ERR_AUDIT_RECORD' | 'ERR_AUDIT_SIGNATURE' | 'ERR_AUDIT_CHAIN_BROKEN' | 'ERR_AUDIT_KEY';
      readonly message: string;
      /** Records before the break, which did verify. */
      readonly verifiedRecords: number;
    };

const NL = 0x0a;

/** Splits bytes into lines at `\n`; `complete` is false when the last line has no newline. */
export function splitLines(bytes: Uint8Array): { lines: Uint8Array[]; complete: boolean } {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === NL) {
      lines.push(bytes.subarray(start, i));
      start = i + 1;
    }
  }
  if (start < bytes.length) {
    lines.push(bytes.subarray(start));
    return { lines, complete: false };
  }
  return { lines, complete: true };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Verifies a whole audit log: every line a canonical record, signed with the key, `seq` counting
 * up from 1 and `prev` the SHA-256 of the line before (AUDIT_GENESIS for the first). Reports the
 * first line that fails, so an edited, deleted, inserted, reordered or re-signed record, and a
 * last line cut short, are each named where they are.
 *
 * Without `publicKey`, the key the first record declares is used: that proves only that the log
 * is internally consistent — anyone can write a consistent log with a key of their own. Pass the
 * key you trust to prove who wrote it.
 *
 * Deleting records from the end leaves a shorter but valid log; only an outside anchor (the last
 * seq/hash copied elsewhere) can show that (docs/audit.md).
 */
export function verifyAuditLog(log: string | Uint8Array, publicKey?: KeyObject): AuditVerification {
  const bytes = typeof log === 'string' ? new TextEncoder().encode(log) : log;
  const { lines, complete } = splitLines(bytes);
  const records: AuditRecord[] = [];
  let key = publicKey;
  let prev = AUDIT_GENESIS;
  const broken = (
    i: number,
    code: Extract<AuditVerification, { ok: false }>['code'],
    message: string,
  ): AuditVerification => ({ ok: false, brokenAt: i + 1, code, message, verifiedRecords: records.length });

  for (const [i, raw] of lines.entries()) {
    if (i === lines.length - 1 && !complete) {
      return broken(
        i,
        'ERR_AUDIT_RECORD',
        'the last record is truncated (no newline): the log was cut mid-write or edited',
      );
    }
    let line: string;
    try {
      line = utf8.decode(raw);
    } catch {
      return broken(i, 'ERR_AUDIT_RECORD', 'not valid UTF-8');
    }
    if (!key) {
      const declared = declaredKey(line);
      if (!declared) {
        return broken(
          i,
          'ERR_AUDIT_KEY',
          'the first record does not declare an Ed25519 public key (data.publicKey)',
        );
      }
      key = declared;
    }
    const r = decodeRecordLine(line, key);
    if (isLineProblem(r)) return broken(i, r.code, r.message);
    if (i === 0 && r.type !== 'audit-start') {
      return broken(
        i,
        'ERR_AUDIT_CHAIN_BROKEN',
        `the first record must be audit-start, got ${r.type}: the log's beginning is missing`,
      );
    }
    const wantSeq = i + 1;
    if (r.seq !== wantSeq) {
      return broken(
        i,
        'ERR_AUDIT_CHAIN_BROKEN',
        `seq is ${r.seq}, expected ${wantSeq}: a record was removed, inserted or moved`,
      );
    }
    if (r.prev !== prev) {
      return broken(
        i,
        'ERR_AUDIT_CHAIN_BROKEN',
        i === 0
          ? 'prev of the first record is not the genesis value'
          : `prev does not match the SHA-256 of line ${i}: the record before was changed, removed or moved`,
      );
    }
    records.push(r);
    prev = sha256Hex(raw);
  }
  if (!key) return { ok: true, records, keyId: '', keySource: publicKey ? 'given' : 'declared' };
  return { ok: true, records, keyId: auditKeyId(key), keySource: publicKey ? 'given' : 'declared' };
}

/** The Ed25519 key an audit-start or segment-start line declares, read without verifying it. */
export function declaredKey(line: string): KeyObject | undefined {
  try {
    const r = JSON.parse(line.replace(/,"sig":"[^"]*"\}$/, '}')) as { data?: { publicKey?: unknown } };
    return decodePublicKey(r.data?.publicKey);
  } catch {
    return undefined;
  }
}
