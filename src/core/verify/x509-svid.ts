import { type KeyObject, X509Certificate } from 'node:crypto';
import { SpiffeIdError, VerifyError } from '../../errors.js';
import type { BundleSource } from '../bundle/source.js';
import type { TrustBundle } from '../bundle/trust-bundle.js';
import type { SpiffeIdMatcher } from '../spiffeid/matcher.js';
import { SpiffeId } from '../spiffeid/spiffe-id.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import { type AnchorInfo, computeAnchorInfo } from './anchor.js';
import { bytesEqual, type CertificateFields, KeyUsage, parseCertificateDer } from './der.js';
import { failure, nowMs, type VerifyFailure } from './result.js';
import { type CachedVerification, X509VerifyCache } from './x509-cache.js';

/**
 * Default {@link VerifyX509SvidOptions.maxChainLength}: the leaf plus up to 7 intermediates, far
 * more than SPIRE's deepest (upstream authority + intermediate + leaf) and a cap on work per call.
 */
export const DEFAULT_MAX_X509_CHAIN_LENGTH = 8;

/**
 * Signature algorithms accepted on the leaf and every intermediate — those go-spiffe's verifier
 * (Go's crypto/x509) accepts: RSA PKCS#1 v1.5 and RSASSA-PSS with SHA-256/384/512, ECDSA with
 * SHA-256/384/512, and Ed25519. MD2, MD5 and SHA-1 (collisions are practical), SHA-224, DSA and
 * anything unknown are refused with `ERR_VERIFY_X509_SIGNATURE_ALGORITHM`.
 */
export const X509_SIGNATURE_ALGORITHMS: ReadonlySet<string> = new Set([
  'sha256WithRSAEncryption',
  'sha384WithRSAEncryption',
  'sha512WithRSAEncryption',
  'RSASSA-PSS(sha256)',
  'RSASSA-PSS(sha384)',
  'RSASSA-PSS(sha512)',
  'ecdsa-with-SHA256',
  'ecdsa-with-SHA384',
  'ecdsa-with-SHA512',
  'Ed25519',
]);

/**
 * Smallest RSA modulus accepted in a leaf or intermediate certificate, bits: the broker's key
 * policy default for bundle authorities and its JWT-SVID minimum (RFC 7518 §3.3).
 */
export const X509_MIN_RSA_BITS = 2048;

/** Curves accepted for EC keys of a leaf or intermediate (node names → JOSE names). */
const X509_EC_CURVES: Readonly<Record<string, string>> = {
  prime256v1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
};

/** Options of {@link verifyX509Svid}. */
export interface VerifyX509SvidOptions {
  /** The verification time (a Date or ms since the Unix epoch); every certificate's validity is checked at it. */
  readonly now: number | Date;
  /** Decides whether the verified SPIFFE ID is acceptable; any valid ID when absent. */
  readonly authorize?: SpiffeIdMatcher;
  /** Most certificates accepted in `chain` (leaf + intermediates). Default {@link DEFAULT_MAX_X509_CHAIN_LENGTH}. */
  readonly maxChainLength?: number;
  /** Remembers verified chains for the warm path; see {@link X509VerifyCache}. */
  readonly cache?: X509VerifyCache;
}

/** A verified X509-SVID. */
export interface X509SvidVerified {
  readonly ok: true;
  /** The leaf's SPIFFE ID (its single URI SAN). */
  readonly id: SpiffeId;
  readonly trustDomain: TrustDomain;
  /** Earliest notAfter on the verified path (leaf, intermediates, authority), ms since the epoch. */
  readonly expiresAt: number;
}

/** Outcome of {@link verifyX509Svid}: verified, or refused with a code and a reason. */
export type X509SvidVerifyResult = X509SvidVerified | VerifyFailure;

/** One certificate of the presented chain, parsed lazily. */
interface Link {
  readonly index: number;
  readonly der: Uint8Array;
  readonly fields: CertificateFields;
  node: X509Certificate | undefined;
}

function describe(index: number): string {
  return index === 0 ? 'leaf certificate' : `intermediate certificate ${index}`;
}

function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** Validity at `now` (RFC 5280 §4.1.2.5: both bounds inclusive). */
function checkValidity(what: string, f: CertificateFields, now: number): VerifyFailure | undefined {
  if (now < f.notBefore) {
    return failure(
      'ERR_VERIFY_X509_NOT_YET_VALID',
      `${what} is not valid before ${isoTime(f.notBefore)} (now is ${isoTime(now)})`,
    );
  }
  if (now > f.notAfter) {
    return failure(
      'ERR_VERIFY_X509_EXPIRED',
      `${what} expired at ${isoTime(f.notAfter)} (now is ${isoTime(now)})`,
    );
  }
  return undefined;
}

function unhandledCritical(what: string, f: CertificateFields): VerifyFailure | undefined {
  if (f.unhandledCritical.length === 0) return undefined;
  // RFC 5280 §4.2: a certificate with an unrecognised critical extension MUST be rejected.
  return failure(
    'ERR_VERIFY_X509_CERTIFICATE',
    `${what} has unsupported critical extension(s) ${f.unhandledCritical.join(', ')} (RFC 5280 §4.2)`,
  );
}

function parseLink(index: number, der: Uint8Array, node: X509Certificate | undefined): Link | VerifyFailure {
  try {
    return { index, der, fields: parseCertificateDer(der), node };
  } catch (err) {
    if (err instanceof VerifyError) return failure(err.code, `${describe(index)}: ${err.message}`);
    throw err;
  }
}

function nodeCert(link: Link): X509Certificate | VerifyFailure {
  if (link.node) return link.node;
  try {
    link.node = new X509Certificate(link.der);
    return link.node;
  } catch (err) {
    return failure(
      'ERR_VERIFY_X509_CERTIFICATE',
      `${describe(link.index)}: node:crypto cannot parse it (${(err as Error).message})`,
    );
  }
}

/**
 * The algorithm policy every presented certificate must meet, before its signature is checked:
 * an accepted signature algorithm ({@link X509_SIGNATURE_ALGORITHMS}) and a public key of an
 * accepted type and size (RSA ≥ {@link X509_MIN_RSA_BITS} bits, EC P-256/384/521, Ed25519). The
 * bundle's own authorities meet the peer's key policy when the bundle is accepted (src/core/policy).
 */
function checkAlgorithms(link: Link): VerifyFailure | undefined {
  const what = describe(link.index);
  const alg = link.fields.signatureAlgorithm;
  if (!X509_SIGNATURE_ALGORITHMS.has(alg)) {
    return failure(
      'ERR_VERIFY_X509_SIGNATURE_ALGORITHM',
      `${what} is signed with ${alg}, which is not accepted (accepted: ${[...X509_SIGNATURE_ALGORITHMS].join(', ')})`,
    );
  }
  const node = nodeCert(link);
  if (!(node instanceof X509Certificate)) return node;
  let key: KeyObject;
  try {
    key = node.publicKey;
  } catch (err) {
    return failure(
      'ERR_VERIFY_X509_CERTIFICATE',
      `${what}: its public key cannot be decoded (${(err as Error).message})`,
    );
  }
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = details.modulusLength ?? 0;
    if (bits < X509_MIN_RSA_BITS) {
      return failure(
        'ERR_VERIFY_X509_KEY',
        `${what} has a ${bits}-bit RSA key; at least ${X509_MIN_RSA_BITS} bits are required`,
      );
    }
    return undefined;
  }
  if (type === 'ec') {
    const curve = details.namedCurve ?? 'unknown';
    if (X509_EC_CURVES[curve] === undefined) {
      return failure(
        'ERR_VERIFY_X509_KEY',
        `${what} has an EC key on curve ${curve}; accepted: P-256, P-384, P-521`,
      );
    }
    return undefined;
  }
  if (type === 'ed25519') return undefined;
  return failure(
    'ERR_VERIFY_X509_KEY',
    `${what} has a ${type ?? 'unknown'} key; accepted: RSA, EC (P-256/384/521), Ed25519`,
  );
}

/** RFC 5280 §4.2.1.10 / X509-SVID §3.1, §5.2: the leaf rules, before any signature work. */
function checkLeaf(leaf: Link): { id: SpiffeId } | VerifyFailure {
  const f = leaf.fields;
  // X509-SVID §2: exactly one URI SAN, and it is the SPIFFE ID.
  if (f.uris.length === 0) {
    return failure(
      'ERR_VERIFY_X509_NO_SPIFFE_ID',
      'leaf certificate has no URI SAN; an X509-SVID carries exactly one, its SPIFFE ID (X509-SVID §2)',
    );
  }
  if (f.uris.length > 1) {
    return failure(
      'ERR_VERIFY_X509_URI_SAN_COUNT',
      `leaf certificate has ${f.uris.length} URI SANs; an X509-SVID MUST have exactly one (X509-SVID §2)`,
    );
  }
  const uri = f.uris[0]!;
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(uri);
  } catch (err) {
    if (!(err instanceof SpiffeIdError)) throw err;
    return failure(
      'ERR_VERIFY_X509_NO_SPIFFE_ID',
      `leaf URI SAN ${JSON.stringify(uri.slice(0, 256))} is not a valid SPIFFE ID: ${err.message} (X509-SVID §2)`,
    );
  }
  // X509-SVID §5.2 (and §3.1): a leaf's SPIFFE ID MUST have a non-root path.
  if (id.path === '') {
    return failure(
      'ERR_VERIFY_X509_LEAF_ID_ROOT',
      `leaf SPIFFE ID ${id.toString()} has no path; a leaf SVID's ID MUST have a non-root path (X509-SVID §5.2)`,
    );
  }
  // X509-SVID §5.2 (and §4.1): a leaf MUST have cA=false.
  if (f.ca) {
    return failure(
      'ERR_VERIFY_X509_LEAF_IS_CA',
      'leaf certificate has basicConstraints cA=true; a leaf SVID MUST NOT be a CA (X509-SVID §4.1, §5.2)',
    );
  }
  // X509-SVID §4.3: key usage MUST be set; a leaf sets digitalSignature and not keyCertSign/cRLSign.
  if (f.keyUsage === undefined) {
    return failure(
      'ERR_VERIFY_X509_LEAF_KEY_USAGE',
      'leaf certificate has no keyUsage extension; it MUST be set (X509-SVID §4.3)',
    );
  }
  if ((f.keyUsage & KeyUsage.digitalSignature) === 0) {
    return failure(
      'ERR_VERIFY_X509_LEAF_KEY_USAGE',
      'leaf certificate keyUsage lacks digitalSignature (X509-SVID §4.3)',
    );
  }
  if ((f.keyUsage & (KeyUsage.keyCertSign | KeyUsage.cRLSign)) !== 0) {
    const which = (f.keyUsage & KeyUsage.keyCertSign) !== 0 ? 'keyCertSign' : 'cRLSign';
    return failure(
      'ERR_VERIFY_X509_LEAF_KEY_USAGE',
      `leaf certificate keyUsage sets ${which}; a leaf SVID MUST NOT (X509-SVID §4.3, §5.2)`,
    );
  }
  return unhandledCritical('leaf certificate', f) ?? checkAlgorithms(leaf) ?? { id };
}

/** True when `child` names `issuer` as its issuer: exact DER first, OpenSSL's comparison as fallback. */
function namesIssuer(
  child: Link,
  childNode: X509Certificate,
  subject: Uint8Array,
  issuerNode: X509Certificate,
): boolean {
  return bytesEqual(child.fields.issuer, subject) || childNode.checkIssued(issuerNode);
}

/** Signature check with node:crypto (OpenSSL's X509_verify). */
function signedBy(childNode: X509Certificate, publicKey: KeyObject): boolean {
  try {
    return childNode.verify(publicKey);
  } catch {
    // A key/signature algorithm mismatch means "not signed by this key".
    return false;
  }
}

/** Number of non-self-issued intermediates in `path` (RFC 5280 §4.2.1.9 counts only those). */
function nonSelfIssued(path: readonly Link[]): number {
  let n = 0;
  for (const l of path) if (!bytesEqual(l.fields.issuer, l.fields.subject)) n++;
  return n;
}

function pathLengthExceeded(
  what: string,
  pathLength: number | undefined,
  below: number,
): VerifyFailure | undefined {
  if (pathLength === undefined || below <= pathLength) return undefined;
  return failure(
    'ERR_VERIFY_X509_PATH_LENGTH',
    `${what} allows ${pathLength} intermediate(s) below it (pathLenConstraint) but the path has ${below} (RFC 5280 §4.2.1.9)`,
  );
}

type AnchorFn = (a: TrustBundle['x509Authorities'][number]) => AnchorInfo;

/**
 * Walks leaf → intermediates → an authority of `bundle`, checking names, signatures, CA flags,
 * key usage, path length and validity at `now`.
 */
function validatePath(
  links: Link[],
  ders: readonly Uint8Array[],
  nodes: readonly (X509Certificate | undefined)[],
  bundle: TrustBundle,
  now: number,
  anchorOf: AnchorFn,
): { validFrom: number; validUntil: number } | VerifyFailure {
  const td = bundle.trustDomain.name;
  let validFrom = links[0]!.fields.notBefore;
  let validUntil = links[0]!.fields.notAfter;
  const problems: string[] = [];
  for (let i = 0; ; i++) {
    const child = links[i]!;
    const childNode = nodeCert(child);
    if (!(childNode instanceof X509Certificate)) return childNode;
    // 1. Is the child issued by one of the trust domain's authorities?
    for (const [k, authority] of bundle.x509Authorities.entries()) {
      const info = anchorOf(authority);
      if (!info.ok) {
        problems.push(`authority ${k} is unusable: ${info.reason}`);
        continue;
      }
      if (!namesIssuer(child, childNode, info.fields.subject, authority.certificate)) continue;
      if (!signedBy(childNode, info.publicKey)) {
        problems.push(
          `${describe(i)} names authority ${k} as issuer but its signature does not verify with that key`,
        );
        continue;
      }
      const what = `X.509 authority ${k} of trust domain "${td}"`;
      if (info.fields.keyUsage !== undefined && (info.fields.keyUsage & KeyUsage.keyCertSign) === 0) {
        // RFC 5280 §4.2.1.3 / X509-SVID §4.3: a signing certificate sets keyCertSign.
        return failure(
          'ERR_VERIFY_X509_UNTRUSTED',
          `${what} may not sign certificates (keyUsage lacks keyCertSign)`,
        );
      }
      const invalid =
        checkValidity(what, info.fields, now) ??
        pathLengthExceeded(what, info.fields.pathLength, nonSelfIssued(links.slice(1, i + 1)));
      if (invalid) return invalid;
      return {
        validFrom: Math.max(validFrom, info.fields.notBefore),
        validUntil: Math.min(validUntil, info.fields.notAfter),
      };
    }
    // 2. Otherwise the next presented certificate must be its issuer.
    const j = i + 1;
    if (j >= ders.length) {
      const detail = problems.length > 0 ? `: ${problems.join('; ')}` : '';
      return failure(
        'ERR_VERIFY_X509_UNTRUSTED',
        `${describe(i)} does not chain to any of the ${bundle.x509Authorities.length} X.509 authorities of trust domain "${td}"${detail}`,
      );
    }
    const parent = parseLink(j, ders[j]!, nodes[j]);
    if (!('fields' in parent)) return parent;
    const pf = parent.fields;
    // X509-SVID §4.1, §3.2: signing certificates MUST have cA=true (and keyCertSign, §4.3).
    if (!pf.ca) {
      return failure(
        'ERR_VERIFY_X509_INTERMEDIATE_NOT_CA',
        `${describe(j)} is not a CA (basicConstraints cA=false or absent); only CAs may issue SVIDs (X509-SVID §4.1)`,
      );
    }
    if (pf.keyUsage !== undefined && (pf.keyUsage & KeyUsage.keyCertSign) === 0) {
      return failure(
        'ERR_VERIFY_X509_INTERMEDIATE_NOT_CA',
        `${describe(j)} keyUsage lacks keyCertSign; signing certificates MUST set it (X509-SVID §4.3)`,
      );
    }
    const crit = unhandledCritical(describe(j), pf) ?? checkAlgorithms(parent);
    if (crit) return crit;
    const parentNode = nodeCert(parent);
    if (!(parentNode instanceof X509Certificate)) return parentNode;
    if (!namesIssuer(child, childNode, pf.subject, parentNode)) {
      return failure(
        'ERR_VERIFY_X509_UNTRUSTED',
        `${describe(i)} was not issued by ${describe(j)} (issuer name does not match) and no X.509 authority of trust domain "${td}" issued it`,
      );
    }
    let parentKey: KeyObject;
    try {
      parentKey = parentNode.publicKey;
    } catch (err) {
      // OpenSSL decodes the key lazily: the certificate parsed, its key does not (found by
      // scripts/fuzz.ts; test/fuzz/regressions.test.ts).
      return failure(
        'ERR_VERIFY_X509_CERTIFICATE',
        `${describe(j)}: its public key cannot be decoded (${(err as Error).message})`,
      );
    }
    if (!signedBy(childNode, parentKey)) {
      return failure(
        'ERR_VERIFY_X509_UNTRUSTED',
        `${describe(i)}: signature does not verify with the key of ${describe(j)}`,
      );
    }
    const invalid =
      checkValidity(describe(j), pf, now) ??
      pathLengthExceeded(describe(j), pf.pathLength, nonSelfIssued(links.slice(1, j)));
    if (invalid) return invalid;
    validFrom = Math.max(validFrom, pf.notBefore);
    validUntil = Math.min(validUntil, pf.notAfter);
    links.push(parent);
  }
}

function toDer(c: unknown, i: number): Uint8Array {
  if (c instanceof Uint8Array) return c;
  if (c instanceof X509Certificate) return c.raw;
  throw new TypeError(
    `verifyX509Svid: chain[${i}] must be a DER Uint8Array or a node:crypto X509Certificate`,
  );
}

function authorized(
  id: SpiffeId,
  trustDomain: TrustDomain,
  expiresAt: number,
  authorize: SpiffeIdMatcher | undefined,
): X509SvidVerifyResult {
  if (authorize && !authorize(id)) {
    return failure(
      'ERR_VERIFY_ID_NOT_AUTHORIZED',
      `SPIFFE ID ${id.toString()} is not authorized: expected ${authorize.description}`,
    );
  }
  return { ok: true, id, trustDomain, expiresAt };
}

/**
 * Verifies an X509-SVID chain against the bundle of **the leaf's own trust domain** — never any
 * other domain's (SPIFFE Federation §4.2) — per the X509-SVID spec §5:
 * - the leaf has exactly one URI SAN, a valid SPIFFE ID with a non-root path (§2, §5.2);
 * - the leaf is not a CA, sets digitalSignature and neither keyCertSign nor cRLSign (§4.1, §4.3, §5.2);
 * - every intermediate is a CA with keyCertSign (§4.1, §4.3), names and signatures chain
 *   (checked with node:crypto), pathLenConstraint holds, and no unknown extension is critical (RFC 5280);
 * - the leaf and every intermediate are signed with an accepted algorithm (no MD5, SHA-1, …) and
 *   carry an accepted key (RSA ≥ 2048 bits, EC P-256/384/521, Ed25519), as go-spiffe requires;
 * - the path ends at an X.509 authority of that bundle; a missing bundle is `ERR_VERIFY_NO_BUNDLE`,
 *   an empty one means the domain revoked everything: `ERR_VERIFY_BUNDLE_REVOKED`;
 * - every certificate on the path, the authority included, is valid at `opts.now`.
 *
 * Presented certificates after the one an authority issued are ignored. Synchronous and pure but
 * for the crypto; never throws for a bad SVID (only `TypeError` on API misuse).
 *
 * @param chain leaf first, then the intermediates the peer presented, as DER or node certificates.
 * @example
 * const r = verifyX509Svid([leafDer, intermediateDer], bundles, { now: Date.now(), authorize: matchMemberOf(td) });
 * if (r.ok) console.log(r.id.toString()); else console.warn(r.code, r.message);
 */
export function verifyX509Svid(
  chain: readonly (Uint8Array | X509Certificate)[],
  source: BundleSource,
  opts: VerifyX509SvidOptions,
): X509SvidVerifyResult {
  const now = nowMs(opts?.now, 'verifyX509Svid');
  if (!Array.isArray(chain)) throw new TypeError('verifyX509Svid: chain must be an array');
  if (typeof source?.getBundleForTrustDomain !== 'function') {
    throw new TypeError('verifyX509Svid: source must implement getBundleForTrustDomain');
  }
  const max = opts.maxChainLength ?? DEFAULT_MAX_X509_CHAIN_LENGTH;
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new TypeError(`verifyX509Svid: maxChainLength must be a positive integer, got ${max}`);
  }
  if (chain.length === 0)
    return failure('ERR_VERIFY_INPUT', 'certificate chain is empty; the leaf SVID comes first');
  if (chain.length > max) {
    return failure(
      'ERR_VERIFY_X509_CHAIN_TOO_LONG',
      `certificate chain has ${chain.length} certificates; at most ${max} are accepted`,
    );
  }
  const ders = chain.map(toDer);
  const cache = opts.cache;
  let key: string | undefined;
  if (cache) {
    key = X509VerifyCache.keyOf(ders);
    const hit = cache.get(key, source, now);
    if (hit) return authorized(hit.id, hit.trustDomain, hit.validUntil, opts.authorize);
  }
  const nodes = chain.map((c) => (c instanceof X509Certificate ? c : undefined));

  const leaf = parseLink(0, ders[0]!, nodes[0]);
  if (!('fields' in leaf)) return leaf;
  const leafCheck = checkLeaf(leaf);
  if (!('id' in leafCheck)) return leafCheck;
  const { id } = leafCheck;
  const td = id.trustDomain;
  // SPIFFE Federation §4.2: only the bundle of the leaf's own trust domain may vouch for it.
  const bundle = source.getBundleForTrustDomain(td);
  if (!bundle) {
    return failure(
      'ERR_VERIFY_NO_BUNDLE',
      `no trust bundle is held for trust domain "${td.name}" (leaf ${id.toString()})`,
    );
  }
  if (bundle.isEmpty()) {
    // SPIFFE Trust Domain and Bundle §4.1.3: an empty bundle means every SVID of the domain is invalid.
    return failure(
      'ERR_VERIFY_BUNDLE_REVOKED',
      `the bundle of trust domain "${td.name}" is empty: the domain revoked all its keys (SPIFFE Trust Domain and Bundle §4.1.3)`,
    );
  }
  if (bundle.x509Authorities.length === 0) {
    // X509-SVID §6.2: no x509-svid entries means the trust domain does not issue X509-SVIDs.
    return failure(
      'ERR_VERIFY_X509_UNTRUSTED',
      `the bundle of trust domain "${td.name}" has no X.509 authorities (X509-SVID §6.2)`,
    );
  }
  const leafInvalid = checkValidity('leaf certificate', leaf.fields, now);
  if (leafInvalid) return leafInvalid;

  const anchorOf: AnchorFn = cache ? (a) => cache.anchor(a) : computeAnchorInfo;
  const path = validatePath([leaf], ders, nodes, bundle, now, anchorOf);
  if ('ok' in path) return path;
  if (cache && key !== undefined) {
    const entry: CachedVerification = {
      id,
      trustDomain: td,
      bundle,
      sequence: bundle.sequence,
      validFrom: path.validFrom,
      validUntil: path.validUntil,
    };
    cache.set(key, entry);
  }
  return authorized(id, td, path.validUntil, opts.authorize);
}
