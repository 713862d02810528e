import { BundleError } from '../../errors.js';

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

const BEGIN = '-----BEGIN ';
const END = '-----END ';
const DASHES = '-----';
/** Longest label read (RFC 7468 labels are short: "CERTIFICATE", "ENCRYPTED PRIVATE KEY"). */
const MAX_LABEL = 64;

/** Options of {@link scanPem}. */
export interface PemScanOptions {
  /**
   * Hears the number of characters each step of the scan examined — a work counter for tests:
   * the sum over a scan is linear in the input's length (each character is examined a bounded
   * number of times, no backtracking).
   */
  readonly onStep?: (chars: number) => void;
}

/** One encapsulated block as found by {@link scanPem}, not yet decoded or checked. */
export interface RawPemBlock {
  /** The BEGIN label, or undefined when the BEGIN line is malformed. */
  readonly beginLabel: string | undefined;
  /** The END label, or undefined when the END line is malformed. */
  readonly endLabel: string | undefined;
  /** The text between the BEGIN and END lines, whitespace included. */
  readonly body: string;
  /** The whole block, from `-----BEGIN` to the END line's closing dashes. */
  readonly text: string;
}

/** What {@link scanPem} finds: the blocks in order, and whether a BEGIN was left without an END. */
export interface PemScan {
  readonly blocks: readonly RawPemBlock[];
  /** A `-----BEGIN ` with no `-----END ` after it: truncated input. */
  readonly unterminated: boolean;
}

function isLabelChar(c: number): boolean {
  // A-Z, 0-9, space, hyphen: the label characters RFC 7468 §2 and common tools use.
  return (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 32 || c === 45;
}

/**
 * Reads a label at `from`, up to its closing `-----`. Bounded: at most {@link MAX_LABEL} characters
 * are examined. Returns the label and the index after the dashes, or undefined.
 */
function readLabel(text: string, from: number, step: (n: number) => void): [string, number] | undefined {
  let i = from;
  const limit = Math.min(text.length, from + MAX_LABEL);
  while (i < limit && isLabelChar(text.charCodeAt(i)) && !text.startsWith(DASHES, i)) i++;
  step(i - from + DASHES.length);
  if (i === from || !text.startsWith(DASHES, i)) return undefined;
  return [text.slice(from, i), i + DASHES.length];
}

/**
 * Finds the encapsulation boundaries of every PEM block of `text` (RFC 7468 §2) in one forward
 * pass: each block is `-----BEGIN …-----`, then the next `-----END …-----`; the scan continues
 * after it. No regular expression, no backtracking: the work is linear in `text.length` (a BEGIN
 * without an END ends the scan at once, where a lazy `[\s\S]*?` pattern would rescan the rest of
 * the input from every BEGIN). Text between blocks is skipped (RFC 7468 §5 explanatory text).
 */
export function scanPem(text: string, opts: PemScanOptions = {}): PemScan {
  if (typeof text !== 'string') throw new TypeError('scanPem expects a string');
  const step = opts.onStep ?? (() => undefined);
  const blocks: RawPemBlock[] = [];
  let pos = 0;
  for (;;) {
    const begin = text.indexOf(BEGIN, pos);
    step((begin === -1 ? text.length : begin) - pos);
    if (begin === -1) return { blocks, unterminated: false };
    const afterBegin = begin + BEGIN.length;
    const label = readLabel(text, afterBegin, step);
    const bodyStart = label ? label[1] : afterBegin;
    const end = text.indexOf(END, bodyStart);
    step((end === -1 ? text.length : end) - bodyStart);
    if (end === -1) return { blocks, unterminated: true };
    const endLabel = readLabel(text, end + END.length, step);
    const stop = endLabel ? endLabel[1] : end + END.length;
    blocks.push({
      beginLabel: label?.[0],
      endLabel: endLabel?.[0],
      body: text.slice(bodyStart, end),
      text: text.slice(begin, stop),
    });
    pos = stop;
  }
}

/** True when `s` is canonical-length base64 (RFC 4648 §4) with padding only at the end. */
function isBase64(s: string, step: (n: number) => void): boolean {
  step(s.length);
  if (s.length === 0 || s.length % 4 !== 0) return false;
  let pad = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 61) {
      pad++;
      continue;
    }
    if (pad > 0) return false; // data after padding
    const ok = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47;
    if (!ok) return false;
  }
  return pad <= 2 && pad < s.length;
}

/** Removes ASCII whitespace (space, tab, CR, LF, FF, VT) in one pass. */
function stripWhitespace(s: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 32 || (c >= 9 && c <= 13)) {
      if (i > from) out += s.slice(from, i);
      from = i + 1;
    }
  }
  return from === 0 ? s : out + s.slice(from);
}

/**
 * Decodes every PEM block of `pem` into DER, in order. Text outside blocks is ignored (RFC 7468 §5
 * allows explanatory text), but there must be at least one block and every block must be well formed.
 * Linear in the input's length ({@link scanPem}).
 *
 * @param label when given, every block must carry this label (e.g. `'CERTIFICATE'`), so a key file
 *   handed over by mistake is refused rather than decoded.
 * @throws BundleError `ERR_BUNDLE_PEM_INVALID` naming the block that failed.
 */
export function pemToDerList(pem: string, label?: string, opts: PemScanOptions = {}): Uint8Array[] {
  if (typeof pem !== 'string') throw new TypeError('pemToDerList expects a string');
  const step = opts.onStep ?? (() => undefined);
  const scan = scanPem(pem, { onStep: step });
  const out: Uint8Array[] = [];
  for (const [index, b] of scan.blocks.entries()) {
    if (b.beginLabel === undefined || b.endLabel === undefined) {
      throw new BundleError(
        'ERR_BUNDLE_PEM_INVALID',
        `PEM block ${index}: malformed ${b.beginLabel === undefined ? 'BEGIN' : 'END'} line`,
      );
    }
    if (b.beginLabel !== b.endLabel) {
      throw new BundleError(
        'ERR_BUNDLE_PEM_INVALID',
        `PEM block ${index}: BEGIN label "${b.beginLabel}" does not match END label "${b.endLabel}"`,
      );
    }
    if (label !== undefined && b.beginLabel !== label) {
      throw new BundleError(
        'ERR_BUNDLE_PEM_INVALID',
        `PEM block ${index}: expected label "${label}", got "${b.beginLabel}"`,
      );
    }
    // A BEGIN inside a block: that block was cut short (RFC 7468 §2: one BEGIN, then its END).
    step(b.body.length);
    if (b.body.includes(BEGIN)) {
      throw new BundleError('ERR_BUNDLE_PEM_INVALID', `PEM block ${index}: BEGIN without a matching END`);
    }
    const body = stripWhitespace(b.body);
    step(b.body.length);
    if (!isBase64(body, step)) {
      throw new BundleError(
        'ERR_BUNDLE_PEM_INVALID',
        `PEM block ${index} ("${b.beginLabel}"): body is not valid base64`,
      );
    }
    out.push(new Uint8Array(Buffer.from(body, 'base64')));
  }
  if (scan.unterminated) {
    // A BEGIN line left open after the last complete block means truncated input.
    throw new BundleError('ERR_BUNDLE_PEM_INVALID', `PEM block ${out.length}: BEGIN without a matching END`);
  }
  if (out.length === 0) {
    throw new BundleError('ERR_BUNDLE_PEM_INVALID', 'no PEM block found (expected "-----BEGIN ...-----")');
  }
  return out;
}

/**
 * The `CERTIFICATE` blocks of `pem` as PEM text, in order, for `new X509Certificate(block)`;
 * other blocks are skipped and nothing is decoded or checked here (callers refuse a block that does
 * not parse, with their own coded error). Linear in the input's length ({@link scanPem}).
 */
export function pemCertificateBlocks(pem: string): string[] {
  return scanPem(pem)
    .blocks.filter((b) => b.beginLabel === 'CERTIFICATE')
    .map((b) => b.text);
}
