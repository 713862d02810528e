import { createHash } from 'node:crypto';

/**
 * The `spiffe-broker.dev/trust-domain` label the broker puts on every per-trust-domain object it
 * writes (bundle ConfigMaps, ClusterTrustBundles), so a label selector — a trust-manager `Bundle`
 * source, a projected volume's `clusterTrustBundle` source — picks exactly one trust domain.
 * The full name is also in the annotation of the same key: a label value is limited to 63
 * characters.
 * @module
 */

/** Label (and annotation) key holding the trust domain. */
export const TRUST_DOMAIN_LABEL = 'spiffe-broker.dev/trust-domain';

/** Longest label value (Kubernetes `IsValidLabelValue`). */
const MAX_LABEL_VALUE = 63;
/** A label value: empty, or alphanumeric at both ends with `-`, `_`, `.` inside. */
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
/** Hex digits of SHA-256 kept in a hashed value (40 bits: collisions need ~10^6 long names). */
const HASH_CHARS = 10;

/**
 * The label value naming `trustDomain`: the name itself when it is a valid label value (SPIFFE
 * trust domain characters — `a-z 0-9 . - _` — all are, so only names longer than 63 characters
 * or with a non-alphanumeric first or last character differ), else a readable prefix of it, `-`
 * and the first 10 hex digits of its SHA-256 (e.g. `very.long.partner…-3f9a0c12b4`). Pure and
 * stable: selectors written today keep matching after a restart.
 *
 * @example
 * trustDomainLabelValue('partner.example.org') // 'partner.example.org'
 */
export function trustDomainLabelValue(trustDomain: string): string {
  if (trustDomain !== '' && trustDomain.length <= MAX_LABEL_VALUE && LABEL_VALUE.test(trustDomain)) {
    return trustDomain;
  }
  const hash = createHash('sha256').update(trustDomain).digest('hex').slice(0, HASH_CHARS);
  const prefix = trustDomain
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, MAX_LABEL_VALUE - HASH_CHARS - 1)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return prefix === '' ? hash : `${prefix}-${hash}`;
}
