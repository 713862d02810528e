import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { RuntimeError } from '../../errors.js';

/**
 * The audit record format and its canonical encoding (docs/audit.md).
 *
 * One record is one line of UTF-8 JSON with the members in this fixed order:
 *
 *     {"seq":N,"time":"…","type":"…","data":{…},"prev":"<64 hex>","sig":"<86 base64url>"}
 *
 * - `prev` is the lower-case hex SHA-256 of the previous line's exact bytes (without its
 *   newline); the first record of a log uses {@link AUDIT_GENESIS}.
 * - `sig` is an Ed25519 signature over the **signed text**: the line with `,"sig":"…"` removed,
 *   i.e. exactly `JSON.stringify({seq, time, type, data, prev})`. The writer produces the line by
 *   inserting the signature before the final `}`; the verifier takes it out again and checks that
 *   the rest is byte-for-byte what `JSON.stringify` gives for its own parse (no whitespace, member
 *   order as above, no duplicates), so there is exactly one valid encoding of each record.
 * @module
 */

/** `prev` of a log's first record: 64 zeros (no record precedes it). */
export const AUDIT_GENESIS = '0'.repeat(64);

/** What an audit record is about. */
export type AuditRecordType =
  /** First record of a log: declares the public key (`data.publicKey`, `data.keyId`). */
  | 'audit-start'
  /** First record after a broken tail: declares the key and references the break. */
  | 'segment-start'
  | 'bundle-accepted'
  | 'bundle-refused'
  | 'spire-write'
  | 'drift'
  | 'revocation'
  | 'allowlist-change'
  | 'allowlist-refused'
  | 'sequence-reset';

/** A JSON object payload. */
export type AuditData = { readonly [key: string]: unknown };

/** One verified (or just written) audit record. */
export interface AuditRecord {
  readonly seq: number;
  /** RFC 3339 UTC time, e.g. `2026-05-01T12:00:00.000Z`. */
  readonly time: string;
  readonly type: AuditRecordType | (string & {});
  readonly data: AuditData;
  readonly prev: string;
  readonly sig: string;
}

const SIG_SUFFIX = /,"sig":"([A-Za-z0-9_-]{86})"\}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const MEMBERS = ['seq', 'time', 'type', 'data', 'prev'];

/** Lower-case hex SHA-256. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** SPKI DER of a public key, base64 (standard alphabet): how records declare their key. */
export function encodePublicKey(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'der' }).toString('base64');
}

/** The key ID used in records and output: hex SHA-256 of the SPKI DER. */
export function auditKeyId(key: KeyObject): string {
  return sha256Hex(key.export({ type: 'spki', format: 'der' }));
}

/** Decodes a key declared by {@link encodePublicKey}; undefined when it is not an Ed25519 key. */
export function decodePublicKey(value: unknown): KeyObject | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const key = createPublicKey({ key: Buffer.from(value, 'base64'), format: 'der', type: 'spki' });
    return key.asymmetricKeyType === 'ed25519' ? key : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Builds and signs one record line (without the newline).
 * @param privateKey an Ed25519 private key
 */
export function encodeRecord(
  fields: { seq: number; time: string; type: string; data: AuditData; prev: string },
  privateKey: KeyObject,
): { line: string; record: AuditRecord } {
  const signed = JSON.stringify({
    seq: fields.seq,
    time: fields.time,
    type: fields.type,
    data: fields.data,
    prev: fields.prev,
  });
  const sig = sign(null, Buffer.from(signed, 'utf8'), privateKey).toString('base64url');
  const line = `${signed.slice(0, -1)},"sig":"${sig}"}`;
  // Re-read what we wrote so data is exactly what a verifier will see (e.g. undefined dropped).
  const parsed = JSON.parse(signed) as Omit<AuditRecord, 'sig'>;
  return { line, record: { ...parsed, sig } };
}

/** Why one line is not a valid record; `code` is the audit error code to report. */
export interface LineProblem {
  readonly code: 'ERR_AUDIT_RECORD' | 'ERR_AUDIT_SIGNATURE';
  readonly message: string;
}

/**
 * Decodes one line (without newline) and checks its form and signature — not its place in the
 * chain. Returns the record or the problem.
 */
export function decodeRecordLine(line: string, publicKey: KeyObject): AuditRecord | LineProblem {
  const m = SIG_SUFFIX.exec(line);
  if (!m) return { code: 'ERR_AUDIT_RECORD', message: 'not an audit record: no trailing "sig" member' };
  const signed = `${line.slice(0, m.index)}}`;
  const sig = m[1]!;
  const sigBytes = Buffer.from(sig, 'base64url');
  // Base64url has spare bits in its last character: insist on the one canonical spelling.
  if (sigBytes.length !== 64 || sigBytes.toString('base64url') !== sig) {
    return {
      code: 'ERR_AUDIT_RECORD',
      message: 'the signature is not a canonical base64url Ed25519 signature',
    };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(signed);
  } catch {
    return { code: 'ERR_AUDIT_RECORD', message: 'not valid JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { code: 'ERR_AUDIT_RECORD', message: 'not a JSON object' };
  }
  const keys = Object.keys(parsed);
  if (keys.length !== MEMBERS.length || keys.some((k, i) => k !== MEMBERS[i])) {
    return {
      code: 'ERR_AUDIT_RECORD',
      message: `members must be exactly ${MEMBERS.join(', ')}, sig in that order`,
    };
  }
  const r = parsed as Record<string, unknown>;
  if (!Number.isSafeInteger(r.seq) || (r.seq as number) < 1) {
    return { code: 'ERR_AUDIT_RECORD', message: 'seq must be a positive integer' };
  }
  if (typeof r.time !== 'string' || Number.isNaN(Date.parse(r.time))) {
    return { code: 'ERR_AUDIT_RECORD', message: 'time must be an RFC 3339 timestamp' };
  }
  if (typeof r.type !== 'string' || r.type.length === 0) {
    return { code: 'ERR_AUDIT_RECORD', message: 'type must be a non-empty string' };
  }
  if (typeof r.data !== 'object' || r.data === null || Array.isArray(r.data)) {
    return { code: 'ERR_AUDIT_RECORD', message: 'data must be a JSON object' };
  }
  if (typeof r.prev !== 'string' || !HEX64.test(r.prev)) {
    return { code: 'ERR_AUDIT_RECORD', message: 'prev must be 64 lower-case hex digits' };
  }
  if (JSON.stringify(parsed) !== signed) {
    return {
      code: 'ERR_AUDIT_RECORD',
      message: 'the record is not in canonical form (as JSON.stringify writes it)',
    };
  }
  if (!verify(null, Buffer.from(signed, 'utf8'), publicKey, sigBytes)) {
    return {
      code: 'ERR_AUDIT_SIGNATURE',
      message: 'the signature does not verify with the audit public key',
    };
  }
  return { ...(r as Omit<AuditRecord, 'sig'>), sig };
}

/** True when `decodeRecordLine` returned a problem. */
export function isLineProblem(r: AuditRecord | LineProblem): r is LineProblem {
  return 'code' in r && !('seq' in r);
}

/** Throws a RuntimeError for a key that is not an Ed25519 key of the expected kind. */
export function requireEd25519(key: KeyObject, kind: 'private' | 'public', what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519' || key.type !== kind) {
    throw new RuntimeError(
      'ERR_AUDIT_KEY',
      `${what} must be an Ed25519 ${kind} key, got ${key.asymmetricKeyType} ${key.type}`,
    );
  }
  return key;
}
