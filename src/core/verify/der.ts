import { VerifyError } from '../../errors.js';

/**
 * A minimal, bounded DER reader for exactly what X509-SVID verification needs and node's
 * `X509Certificate` does not expose reliably: the key usage bits, the URI SANs one by one (node's
 * `subjectAltName` string is ambiguous when a URI contains `, `), basic constraints with the path
 * length, the raw issuer/subject names, validity, and which extensions are critical.
 *
 * It walks only the fixed RFC 5280 structure (no recursion, no generic tree), every read is bounds
 * checked against its enclosing element, and every failure is a {@link VerifyError}
 * `ERR_VERIFY_X509_CERTIFICATE` naming what was malformed — never a RangeError or TypeError.
 * @module
 */

/** Certificates larger than this are refused before parsing (SPIRE's are ~1 KiB). */
export const MAX_CERTIFICATE_BYTES = 64 * 1024;

/** Key usage bits as numbers `1 << n` for RFC 5280 §4.2.1.3 bit `n`. */
export const KeyUsage = {
  digitalSignature: 1 << 0,
  nonRepudiation: 1 << 1,
  keyEncipherment: 1 << 2,
  dataEncipherment: 1 << 3,
  keyAgreement: 1 << 4,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
  encipherOnly: 1 << 7,
  decipherOnly: 1 << 8,
} as const;

/** What {@link parseCertificateDer} extracts from one certificate. */
export interface CertificateFields {
  /** Raw DER of the issuer Name (tag and length included), for exact name chaining. */
  readonly issuer: Uint8Array;
  /** Raw DER of the subject Name (tag and length included). */
  readonly subject: Uint8Array;
  /** ms since the Unix epoch. */
  readonly notBefore: number;
  /** ms since the Unix epoch. */
  readonly notAfter: number;
  /** basicConstraints cA; false when the extension is absent (RFC 5280 §4.2.1.9). */
  readonly ca: boolean;
  /** basicConstraints pathLenConstraint, when present. */
  readonly pathLength: number | undefined;
  /** Key usage bits ({@link KeyUsage}); undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  /** uniformResourceIdentifier SAN entries, in order (latin1-decoded IA5String). */
  readonly uris: readonly string[];
  /** Dotted OIDs of critical extensions this reader does not process. */
  readonly unhandledCritical: readonly string[];
  /**
   * The algorithm the certificate is signed with (RFC 5280 §4.1.1.2), by name: e.g.
   * `sha256WithRSAEncryption`, `ecdsa-with-SHA384`, `Ed25519`, `RSASSA-PSS(sha256)`, `md5WithRSAEncryption`
   * — or the dotted OID when unknown. RSASSA-PSS names its hash only when the MGF1 hash is the same,
   * else `RSASSA-PSS(<hash>,mgf1-<hash>)`; absent parameters mean SHA-1 (RFC 4055 §3.1).
   */
  readonly signatureAlgorithm: string;
}

/** Signature algorithm OIDs by dotted form (RFC 3279, RFC 4055, RFC 5758, RFC 8410). */
const SIGNATURE_ALGORITHMS: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.2': 'md2WithRSAEncryption',
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.113549.1.1.11': 'sha256WithRSAEncryption',
  '1.2.840.113549.1.1.12': 'sha384WithRSAEncryption',
  '1.2.840.113549.1.1.13': 'sha512WithRSAEncryption',
  '1.2.840.113549.1.1.14': 'sha224WithRSAEncryption',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.2.840.10045.4.3.1': 'ecdsa-with-SHA224',
  '1.2.840.10045.4.3.2': 'ecdsa-with-SHA256',
  '1.2.840.10045.4.3.3': 'ecdsa-with-SHA384',
  '1.2.840.10045.4.3.4': 'ecdsa-with-SHA512',
  '1.2.840.10040.4.3': 'dsa-with-sha1',
  '2.16.840.1.101.3.4.3.2': 'dsa-with-sha256',
  '1.3.101.112': 'Ed25519',
  '1.3.101.113': 'Ed448',
};
const RSASSA_PSS = '1.2.840.113549.1.1.10';
const MGF1 = '1.2.840.113549.1.1.8';
/** Hash OIDs (RFC 3279, RFC 5754) by dotted form. */
const HASHES: Readonly<Record<string, string>> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.4': 'sha224',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

const TAG_BOOLEAN = 0x01;
const TAG_INTEGER = 0x02;
const TAG_BIT_STRING = 0x03;
const TAG_OCTET_STRING = 0x04;
const TAG_OID = 0x06;
const TAG_UTC_TIME = 0x17;
const TAG_GENERALIZED_TIME = 0x18;
const TAG_SEQUENCE = 0x30;
const TAG_VERSION = 0xa0; // [0] EXPLICIT
const TAG_ISSUER_UID = 0x81; // [1] IMPLICIT
const TAG_SUBJECT_UID = 0x82; // [2] IMPLICIT
const TAG_EXTENSIONS = 0xa3; // [3] EXPLICIT
const TAG_SAN_URI = 0x86; // GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String

/** Content octets of the arcs 2.5.29.x ("id-ce"): 0x55 0x1d x. */
const ID_CE_0 = 0x55;
const ID_CE_1 = 0x1d;
const CE_SUBJECT_KEY_ID = 14;
const CE_KEY_USAGE = 15;
const CE_SUBJECT_ALT_NAME = 17;
const CE_BASIC_CONSTRAINTS = 19;
const CE_AUTHORITY_KEY_ID = 35;
const CE_EXT_KEY_USAGE = 37;

function fail(what: string): never {
  throw new VerifyError('ERR_VERIFY_X509_CERTIFICATE', `malformed certificate DER: ${what}`);
}

/** One TLV: its first octet at `pos`, `tag`, content from `start` to `end` (exclusive). */
interface Tlv {
  pos: number;
  tag: number;
  start: number;
  end: number;
}

/**
 * Reads the TLV at `pos`, which must lie entirely before `limit`. Only low tag numbers (all that
 * X.509 uses), definite lengths in minimal form up to 4 length octets.
 */
function readTlv(b: Uint8Array, pos: number, limit: number, what: string): Tlv {
  if (pos + 2 > limit) fail(`${what}: truncated`);
  const tag = b[pos]!;
  if ((tag & 0x1f) === 0x1f) fail(`${what}: high tag numbers are not supported`);
  let len = b[pos + 1]!;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) fail(`${what}: indefinite length is not DER`);
    if (n > 4) fail(`${what}: length of ${n} octets is too large`);
    if (start + n > limit) fail(`${what}: truncated length`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    if (len < 0x80 || (n > 1 && b[start] === 0)) fail(`${what}: length is not minimally encoded`);
    start += n;
  }
  const end = start + len;
  if (end > limit) fail(`${what}: length ${len} runs past the end of its container`);
  return { pos, tag, start, end };
}

function expectTag(t: Tlv, tag: number, what: string): void {
  if (t.tag !== tag) fail(`${what}: expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`);
}

function digits(b: Uint8Array, pos: number, n: number, what: string): number {
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = b[pos + i]! - 0x30;
    if (c < 0 || c > 9) fail(`${what}: non-digit in time`);
    v = v * 10 + c;
  }
  return v;
}

/** RFC 5280 §4.1.2.5: UTCTime YYMMDDHHMMSSZ (YY ≥ 50 → 19YY) or GeneralizedTime YYYYMMDDHHMMSSZ. */
function readTime(b: Uint8Array, t: Tlv, what: string): number {
  const len = t.end - t.start;
  let p = t.start;
  let year: number;
  if (t.tag === TAG_UTC_TIME) {
    if (len !== 13) fail(`${what}: UTCTime must be YYMMDDHHMMSSZ`);
    const yy = digits(b, p, 2, what);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    p += 2;
  } else if (t.tag === TAG_GENERALIZED_TIME) {
    if (len !== 15) fail(`${what}: GeneralizedTime must be YYYYMMDDHHMMSSZ`);
    year = digits(b, p, 4, what);
    p += 4;
  } else {
    fail(`${what}: not a UTCTime or GeneralizedTime`);
  }
  const month = digits(b, p, 2, what);
  const day = digits(b, p + 2, 2, what);
  const hour = digits(b, p + 4, 2, what);
  const minute = digits(b, p + 6, 2, what);
  const second = digits(b, p + 8, 2, what);
  if (b[p + 10] !== 0x5a) fail(`${what}: time must end in Z`);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) {
    fail(`${what}: time field out of range`);
  }
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  if (new Date(ms).getUTCDate() !== day) fail(`${what}: day ${day} does not exist in that month`);
  return ms;
}

/** Dotted form of an OID's content octets (for messages only). */
function oidString(b: Uint8Array, t: Tlv): string {
  const arcs: number[] = [];
  let v = 0;
  for (let i = t.start; i < t.end; i++) {
    const c = b[i]!;
    v = v * 128 + (c & 0x7f);
    if (!(c & 0x80)) {
      if (arcs.length === 0) arcs.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else arcs.push(v);
      v = 0;
    }
  }
  return arcs.join('.');
}

/** The hash named by an AlgorithmIdentifier (for RSASSA-PSS parameters). */
function hashOf(b: Uint8Array, t: Tlv, what: string): string {
  const algId = readTlv(b, t.start, t.end, what);
  expectTag(algId, TAG_SEQUENCE, what);
  const oid = readTlv(b, algId.start, algId.end, `${what}.algorithm`);
  expectTag(oid, TAG_OID, `${what}.algorithm`);
  const dotted = oidString(b, oid);
  return HASHES[dotted] ?? dotted;
}

/**
 * Names the signature algorithm of an AlgorithmIdentifier (see
 * {@link CertificateFields.signatureAlgorithm}); for RSASSA-PSS reads the hash and MGF1 hash from
 * RSASSA-PSS-params (RFC 4055 §3.1; both default to SHA-1).
 */
function readSignatureAlgorithm(b: Uint8Array, alg: Tlv): string {
  const oid = readTlv(b, alg.start, alg.end, 'signature.algorithm');
  expectTag(oid, TAG_OID, 'signature.algorithm');
  const dotted = oidString(b, oid);
  if (dotted !== RSASSA_PSS) return SIGNATURE_ALGORITHMS[dotted] ?? dotted;
  let hash = 'sha1';
  let mgfHash = 'sha1';
  if (oid.end < alg.end) {
    const params = readTlv(b, oid.end, alg.end, 'RSASSA-PSS-params');
    expectTag(params, TAG_SEQUENCE, 'RSASSA-PSS-params');
    for (let p = params.start; p < params.end; ) {
      const field = readTlv(b, p, params.end, 'RSASSA-PSS-params field');
      p = field.end;
      if (field.tag === 0xa0) {
        hash = hashOf(b, field, 'RSASSA-PSS-params.hashAlgorithm');
      } else if (field.tag === 0xa1) {
        const mgf = readTlv(b, field.start, field.end, 'RSASSA-PSS-params.maskGenAlgorithm');
        expectTag(mgf, TAG_SEQUENCE, 'RSASSA-PSS-params.maskGenAlgorithm');
        const mgfOid = readTlv(b, mgf.start, mgf.end, 'maskGenAlgorithm.algorithm');
        expectTag(mgfOid, TAG_OID, 'maskGenAlgorithm.algorithm');
        if (oidString(b, mgfOid) !== MGF1) return `RSASSA-PSS(${hash},${oidString(b, mgfOid)})`;
        mgfHash = hashOf(
          b,
          { pos: mgfOid.end, tag: TAG_SEQUENCE, start: mgfOid.end, end: mgf.end },
          'MGF1 hash',
        );
      }
    }
  }
  return hash === mgfHash ? `RSASSA-PSS(${hash})` : `RSASSA-PSS(${hash},mgf1-${mgfHash})`;
}

/** The x of a 2.5.29.x OID, or -1 for any other OID. */
function idCeArc(b: Uint8Array, t: Tlv): number {
  return t.end - t.start === 3 && b[t.start] === ID_CE_0 && b[t.start + 1] === ID_CE_1 ? b[t.start + 2]! : -1;
}

/** RFC 5280 §4.2.1.3: KeyUsage ::= BIT STRING, bit 0 = most significant bit of the first octet. */
function readKeyUsage(b: Uint8Array, t: Tlv): number {
  const bits = readTlv(b, t.start, t.end, 'keyUsage');
  expectTag(bits, TAG_BIT_STRING, 'keyUsage');
  if (bits.end !== t.end) fail('keyUsage: trailing data');
  const n = bits.end - bits.start;
  if (n < 1) fail('keyUsage: empty BIT STRING');
  const unused = b[bits.start]!;
  if (unused > 7 || (n === 1 && unused !== 0)) fail('keyUsage: bad unused-bits count');
  let usage = 0;
  // Only the first two content octets carry defined bits (0..8).
  for (let i = 1; i < n && i <= 2; i++) {
    const octet = b[bits.start + i]!;
    for (let bit = 0; bit < 8; bit++) if (octet & (0x80 >> bit)) usage |= 1 << ((i - 1) * 8 + bit);
  }
  return usage;
}

/** RFC 5280 §4.2.1.9: BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLen INTEGER OPTIONAL }. */
function readBasicConstraints(b: Uint8Array, t: Tlv): { ca: boolean; pathLength: number | undefined } {
  const seq = readTlv(b, t.start, t.end, 'basicConstraints');
  expectTag(seq, TAG_SEQUENCE, 'basicConstraints');
  if (seq.end !== t.end) fail('basicConstraints: trailing data');
  let p = seq.start;
  let ca = false;
  let pathLength: number | undefined;
  if (p < seq.end) {
    const first = readTlv(b, p, seq.end, 'basicConstraints.cA');
    if (first.tag === TAG_BOOLEAN) {
      if (first.end - first.start !== 1) fail('basicConstraints.cA: BOOLEAN must be one octet');
      ca = b[first.start] !== 0;
      p = first.end;
    }
  }
  if (p < seq.end) {
    const pl = readTlv(b, p, seq.end, 'basicConstraints.pathLenConstraint');
    expectTag(pl, TAG_INTEGER, 'basicConstraints.pathLenConstraint');
    const n = pl.end - pl.start;
    if (n < 1 || n > 4 || b[pl.start]! & 0x80) fail('basicConstraints.pathLenConstraint: out of range');
    pathLength = 0;
    for (let i = pl.start; i < pl.end; i++) pathLength = pathLength * 256 + b[i]!;
    p = pl.end;
  }
  if (p !== seq.end) fail('basicConstraints: unexpected element');
  return { ca, pathLength };
}

/** RFC 5280 §4.2.1.6: GeneralNames ::= SEQUENCE SIZE (1..MAX) OF GeneralName; keeps the URIs. */
function readSanUris(b: Uint8Array, t: Tlv): string[] {
  const seq = readTlv(b, t.start, t.end, 'subjectAltName');
  expectTag(seq, TAG_SEQUENCE, 'subjectAltName');
  if (seq.end !== t.end) fail('subjectAltName: trailing data');
  if (seq.start === seq.end) fail('subjectAltName: empty GeneralNames');
  const uris: string[] = [];
  for (let p = seq.start; p < seq.end; ) {
    const gn = readTlv(b, p, seq.end, 'subjectAltName entry');
    if ((gn.tag & 0xc0) !== 0x80) fail('subjectAltName entry: not a context-specific GeneralName');
    if (gn.tag === TAG_SAN_URI) {
      let s = '';
      for (let i = gn.start; i < gn.end; i++) s += String.fromCharCode(b[i]!);
      uris.push(s);
    }
    p = gn.end;
  }
  return uris;
}

/**
 * Parses the RFC 5280 fields X509-SVID verification needs out of one DER certificate.
 *
 * @throws VerifyError `ERR_VERIFY_X509_CERTIFICATE` on any malformed or oversized input, or a
 *   repeated extension (RFC 5280 §4.2: at most one instance of each).
 */
export function parseCertificateDer(der: Uint8Array): CertificateFields {
  if (der.length > MAX_CERTIFICATE_BYTES) {
    fail(`certificate is ${der.length} bytes; the maximum is ${MAX_CERTIFICATE_BYTES}`);
  }
  const cert = readTlv(der, 0, der.length, 'Certificate');
  expectTag(cert, TAG_SEQUENCE, 'Certificate');
  if (cert.end !== der.length) fail('Certificate: trailing data after the certificate');
  const tbs = readTlv(der, cert.start, cert.end, 'tbsCertificate');
  expectTag(tbs, TAG_SEQUENCE, 'tbsCertificate');
  const outerAlg = readTlv(der, tbs.end, cert.end, 'signatureAlgorithm');
  expectTag(outerAlg, TAG_SEQUENCE, 'signatureAlgorithm');
  const sig = readTlv(der, outerAlg.end, cert.end, 'signatureValue');
  expectTag(sig, TAG_BIT_STRING, 'signatureValue');
  if (sig.end !== cert.end) fail('Certificate: unexpected element after signatureValue');

  let p = tbs.start;
  let t = readTlv(der, p, tbs.end, 'tbsCertificate.version');
  if (t.tag === TAG_VERSION) {
    p = t.end;
    t = readTlv(der, p, tbs.end, 'tbsCertificate.serialNumber');
  }
  expectTag(t, TAG_INTEGER, 'tbsCertificate.serialNumber');
  const innerAlg = readTlv(der, t.end, tbs.end, 'tbsCertificate.signature');
  expectTag(innerAlg, TAG_SEQUENCE, 'tbsCertificate.signature');
  // RFC 5280 §4.1.1.2: the outer signatureAlgorithm MUST equal tbsCertificate.signature.
  if (!sameBytes(der, innerAlg.pos, innerAlg.end, outerAlg.pos, outerAlg.end)) {
    fail('signatureAlgorithm differs from tbsCertificate.signature');
  }
  const signatureAlgorithm = readSignatureAlgorithm(der, innerAlg);
  const issuer = readTlv(der, innerAlg.end, tbs.end, 'tbsCertificate.issuer');
  expectTag(issuer, TAG_SEQUENCE, 'tbsCertificate.issuer');
  const validity = readTlv(der, issuer.end, tbs.end, 'tbsCertificate.validity');
  expectTag(validity, TAG_SEQUENCE, 'tbsCertificate.validity');
  const nbT = readTlv(der, validity.start, validity.end, 'validity.notBefore');
  const notBefore = readTime(der, nbT, 'validity.notBefore');
  const naT = readTlv(der, nbT.end, validity.end, 'validity.notAfter');
  const notAfter = readTime(der, naT, 'validity.notAfter');
  if (naT.end !== validity.end) fail('validity: trailing data');
  const subject = readTlv(der, validity.end, tbs.end, 'tbsCertificate.subject');
  expectTag(subject, TAG_SEQUENCE, 'tbsCertificate.subject');
  const spki = readTlv(der, subject.end, tbs.end, 'tbsCertificate.subjectPublicKeyInfo');
  expectTag(spki, TAG_SEQUENCE, 'tbsCertificate.subjectPublicKeyInfo');

  let ca = false;
  let pathLength: number | undefined;
  let keyUsage: number | undefined;
  let uris: string[] = [];
  const unhandledCritical: string[] = [];
  const seen = new Set<string>();
  p = spki.end;
  while (p < tbs.end) {
    t = readTlv(der, p, tbs.end, 'tbsCertificate optional field');
    p = t.end;
    if (t.tag === TAG_ISSUER_UID || t.tag === TAG_SUBJECT_UID) continue;
    if (t.tag !== TAG_EXTENSIONS) fail(`tbsCertificate: unexpected field tag 0x${t.tag.toString(16)}`);
    if (p !== tbs.end) fail('tbsCertificate: data after extensions');
    const exts = readTlv(der, t.start, t.end, 'extensions');
    expectTag(exts, TAG_SEQUENCE, 'extensions');
    if (exts.end !== t.end) fail('extensions: trailing data');
    for (let q = exts.start; q < exts.end; ) {
      const ext = readTlv(der, q, exts.end, 'extension');
      expectTag(ext, TAG_SEQUENCE, 'extension');
      q = ext.end;
      const oid = readTlv(der, ext.start, ext.end, 'extension.extnID');
      expectTag(oid, TAG_OID, 'extension.extnID');
      const name = oidString(der, oid);
      if (seen.has(name)) fail(`extension ${name} appears more than once`);
      seen.add(name);
      let v = readTlv(der, oid.end, ext.end, `extension ${name}`);
      let critical = false;
      if (v.tag === TAG_BOOLEAN) {
        if (v.end - v.start !== 1) fail(`extension ${name}: critical must be one octet`);
        critical = der[v.start] !== 0;
        v = readTlv(der, v.end, ext.end, `extension ${name}.extnValue`);
      }
      expectTag(v, TAG_OCTET_STRING, `extension ${name}.extnValue`);
      if (v.end !== ext.end) fail(`extension ${name}: trailing data`);
      switch (idCeArc(der, oid)) {
        case CE_KEY_USAGE:
          keyUsage = readKeyUsage(der, v);
          break;
        case CE_BASIC_CONSTRAINTS:
          ({ ca, pathLength } = readBasicConstraints(der, v));
          break;
        case CE_SUBJECT_ALT_NAME:
          uris = readSanUris(der, v);
          break;
        case CE_SUBJECT_KEY_ID:
        case CE_AUTHORITY_KEY_ID:
        case CE_EXT_KEY_USAGE:
          // Recognised; not needed for the checks made here (X509-SVID §4.4 leaves EKU optional).
          break;
        default:
          if (critical) unhandledCritical.push(name);
      }
    }
  }
  return {
    issuer: der.subarray(issuer.pos, issuer.end),
    subject: der.subarray(subject.pos, subject.end),
    notBefore,
    notAfter,
    ca,
    pathLength,
    keyUsage,
    uris,
    unhandledCritical,
    signatureAlgorithm,
  };
}

function sameBytes(b: Uint8Array, s1: number, e1: number, s2: number, e2: number): boolean {
  if (e1 - s1 !== e2 - s2) return false;
  for (let i = 0; i < e1 - s1; i++) if (b[s1 + i] !== b[s2 + i]) return false;
  return true;
}

/** Byte equality of two arrays (for raw Name comparison). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
