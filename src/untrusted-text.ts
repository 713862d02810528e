/**
 * Making peer-controlled strings safe to put in a log line, an audit record, a status page or a
 * terminal.
 *
 * A peer chooses its key IDs, its `use`/`kty` values, its HTTP error bodies and the text of many
 * refusal messages that quote them. Written raw, such a string can fill a disk (one peer sent
 * kilobyte key IDs at a one-second refresh hint) or carry terminal escapes (ESC, BEL) and line
 * breaks that forge log lines. Every such string goes through {@link untrustedText} once, where it
 * enters a message: bounded in length, control characters escaped.
 *
 * Pure, dependency-free, importable from the core and the adapters alike (like errors.ts).
 * @module
 */

/** Default {@link untrustedText} bound: long enough for any SPIFFE-ish value, short for a log line. */
export const DEFAULT_UNTRUSTED_TEXT_CHARS = 256;

/** Longest whole message (e.g. a refusal's) kept in one log or audit record, in characters. */
export const MAX_LOGGED_MESSAGE_CHARS = 1024;

/**
 * True for what must not reach a log or terminal raw: C0 controls, DEL, C1 controls, the Unicode
 * line and paragraph separators and the bidirectional overrides/isolates (which reorder what a
 * terminal shows).
 */
function isUnsafe(c: number): boolean {
  return (
    c <= 0x1f ||
    (c >= 0x7f && c <= 0x9f) ||
    c === 0x2028 ||
    c === 0x2029 ||
    (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2066 && c <= 0x2069)
  );
}

function escapeCode(c: number): string {
  return `\\u${c.toString(16).padStart(4, '0')}`;
}

/** Escapes unsafe characters and lone surrogates (not text; a UTF-8 encoder would mangle them). */
function escapeUnsafe(s: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let bad = isUnsafe(c);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      bad = true;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      bad = true;
    }
    if (bad) {
      out += s.slice(from, i) + escapeCode(c);
      from = i + 1;
    }
  }
  return from === 0 ? s : out + s.slice(from);
}

/**
 * Returns `value` bounded to `maxChars` characters (UTF-16 units) and with every control
 * character escaped as `\uXXXX`, so the result prints on one line exactly as it reads. A cut
 * value ends with `…(+N chars)`. Non-strings are first converted with `String()`.
 *
 * The bound applies before escaping (an escape is six characters), so the result is at most
 * about six times `maxChars` plus the suffix.
 *
 * @example
 * untrustedText('kid\u001b[2J', 16) // 'kid\\u001b[2J'
 * untrustedText('x'.repeat(1000), 8) // 'xxxxxxxx…(+992 chars)'
 */
export function untrustedText(value: unknown, maxChars: number = DEFAULT_UNTRUSTED_TEXT_CHARS): string {
  if (!Number.isInteger(maxChars) || maxChars < 0) {
    throw new TypeError(`untrustedText: maxChars must be a non-negative integer, got ${maxChars}`);
  }
  const s = typeof value === 'string' ? value : String(value);
  let cut = s.length > maxChars ? s.slice(0, maxChars) : s;
  // Do not leave half a surrogate pair at the cut.
  const lastCode = cut.charCodeAt(cut.length - 1);
  if (cut.length < s.length && lastCode >= 0xd800 && lastCode <= 0xdbff) cut = cut.slice(0, -1);
  const safe = escapeUnsafe(cut);
  return cut.length < s.length ? `${safe}…(+${s.length - cut.length} chars)` : safe;
}

/**
 * {@link untrustedText} applied to a quoted value, the way messages quote peer strings:
 * `"…"` with inner quotes and backslashes escaped as in JSON.
 */
export function quoteUntrusted(value: unknown, maxChars: number = DEFAULT_UNTRUSTED_TEXT_CHARS): string {
  const s = typeof value === 'string' ? value : String(value);
  return `"${untrustedText(
    s.replace(/[\\"]/g, (c) => `\\${c}`),
    maxChars,
  )}"`;
}
