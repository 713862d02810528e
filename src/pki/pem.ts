import { BundleError } from '../errors.js';

/** Base64 body lines are 64 characters (RFC 7468 §2). */
const LINE = 64;

/**
 * Encodes DER bytes as one PEM block (RFC 7468).
 *
 * @param label defaults to `'CERTIFICATE'`.
 * @example
 * toPem(cert.der); // '-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n'
 */
export function toPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += LINE) body += `${b64.slice(i, i + LINE)}\n`;
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
const BASE64_BODY = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Decodes every PEM block of `pem` into DER, in order. Text outside blocks is ignored (RFC 7468 §5
 * allows explanatory text), but there must be at least one block and every block must be well formed.
 *
 * @param label when given, every block must carry this label (e.g. `'CERTIFICATE'`), so a key file
 *   handed over by mistake is refused rather than decoded.
 * @throws BundleError `ERR_BUNDLE_PEM_INVALID` naming the block that failed.
 */
export function pemToDerList(pem: string, label?: string): Uint8Array[] {
  if (typeof pem !== 'string') throw new TypeError('pemToDerList expects a string');
  const out: Uint8Array[] = [];
  for (const m of pem.matchAll(BLOCK)) {
    const [, begin, rawBody, end] = m;
    const index = out.length;
    if (begin !== end) {
      throw new BundleError(
        'ERR_BUNDLE_PEM_INVALID',
        `PEM block ${index}: BEGIN label "${begin}" does not match END label "${end}"`,
      );
    }
    if (label !== undefined && begin !== label) {
      throw new BundleError(
        'ERR_BUNDLE_PEM_INVALID',
        `PEM block ${index}: expected label "${label}", got "${begin}"`,
      );
    }
    const body = (rawBody ?? '').replace(/\s+/g, '');
    if (body.length === 0 || body.length % 4 !== 0 || !BASE64_BODY.test(body)) {
      throw new BundleError(
        'ERR_BUNDLE_PEM_INVALID',
        `PEM block ${index} ("${begin}"): body is not valid base64`,
      );
    }
    out.push(new Uint8Array(Buffer.from(body, 'base64')));
  }
  if (out.length === 0) {
    throw new BundleError('ERR_BUNDLE_PEM_INVALID', 'no PEM block found (expected "-----BEGIN ...-----")');
  }
  // A BEGIN line left open after the last complete block means truncated input.
  const lastEnd = pem.lastIndexOf('-----END ');
  if (pem.indexOf('-----BEGIN ', lastEnd) !== -1) {
    throw new BundleError('ERR_BUNDLE_PEM_INVALID', `PEM block ${out.length}: BEGIN without a matching END`);
  }
  return out;
}
