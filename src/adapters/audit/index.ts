/**
 * The tamper-evident audit trail: append-only JSON lines, each record Ed25519-signed and chained
 * to the previous line by SHA-256, so an edited, deleted, inserted, reordered or re-signed record
 * is found by {@link verifyAuditLog}. {@link AuditWriter} appends (an append resolves once its
 * record is fsynced, by default; records appended together share one fsync) and resumes the
 * chain on restart; {@link AuditTrail} is the typed façade the daemon calls.
 * Format and guarantees: docs/audit.md.
 * @module
 */
export type { AuditSink } from './audit-trail.js';
export { AuditTrail } from './audit-trail.js';
export type { AuditAppendHandle, AuditFs } from './fs.js';
export { nodeAuditFs } from './fs.js';
export type { AuditKey } from './key.js';
export { AUDIT_KEY_MODE, loadOrCreateAuditKey, parseAuditPublicKey } from './key.js';
export type { AuditData, AuditRecord, AuditRecordType, LineProblem } from './record.js';
export { AUDIT_GENESIS, auditKeyId, decodeRecordLine, encodePublicKey, encodeRecord } from './record.js';
export type { RepeatDecision, RepeatedReports, RepeatLimiterOptions } from './repeat-limiter.js';
export {
  DEFAULT_REPEAT_INTERVAL_MS,
  DEFAULT_REPEAT_MAX_KEYS,
  limitRepeatedReports,
  RepeatLimiter,
} from './repeat-limiter.js';
export type { AuditVerification } from './verify.js';
export { declaredKey, verifyAuditLog } from './verify.js';
export type { AuditResume, AuditWriterDeps, AuditWriterOptions } from './writer.js';
export {
  AUDIT_GROUP_MAX_RECORDS,
  AUDIT_TAIL_MAX_BYTES,
  AUDIT_TAIL_WINDOW_BYTES,
  AuditWriter,
} from './writer.js';
