/**
 * Pure parsers for the request headers the endpoint honours: `If-None-Match` (RFC 9110 §13.1.2)
 * and the `wait` preference of `Prefer` (RFC 7240 §4.3).
 * @module
 */

/** Outcome of evaluating `If-None-Match` against the current entity tag. */
export type IfNoneMatch =
  /** No header: serve normally. */
  | 'absent'
  /** `*`: any current document satisfies the client (RFC 9110 §13.1.2). */
  | 'any'
  /** A listed tag matches: the client already holds the current document. */
  | 'match'
  /** The header lists only other tags. */
  | 'no-match';

/** Strips a weak prefix: If-None-Match uses the weak comparison (RFC 9110 §13.1.2, §8.8.3.2). */
function opaque(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/**
 * Evaluates `If-None-Match` (one or several header lines, already joined with ", " by Node) against
 * the current strong entity tag `etag` (quotes included).
 *
 * @returns `'any'` for `*`, `'match'` when the header names `etag` (weakly or strongly).
 */
export function evaluateIfNoneMatch(header: string | string[] | undefined, etag: string): IfNoneMatch {
  if (header === undefined) return 'absent';
  const value = Array.isArray(header) ? header.join(',') : header;
  if (value.trim() === '*') return 'any';
  const want = opaque(etag);
  // entity-tag = [ W/ ] DQUOTE *etagc DQUOTE; etagc excludes DQUOTE and commas only appear between
  // tags, so scanning quoted strings is exact for well-formed input and harmless otherwise.
  for (const m of value.matchAll(/(?:W\/)?"[^"]*"/g)) {
    if (opaque(m[0]) === want) return 'match';
  }
  return 'no-match';
}

/**
 * The `wait` preference of a `Prefer` header (RFC 7240 §4.3: `wait=<delta-seconds>`), in seconds,
 * clamped to `maxSeconds`, or undefined when absent or malformed. When several `wait` preferences
 * are given the first wins (RFC 7240 §2).
 */
export function preferredWaitSeconds(
  header: string | string[] | undefined,
  maxSeconds: number,
): number | undefined {
  if (header === undefined) return undefined;
  const lines = Array.isArray(header) ? header : [header];
  for (const line of lines) {
    for (const pref of line.split(',')) {
      // preference = token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] ); only the head matters.
      const head = pref.split(';', 1)[0] ?? '';
      const eq = head.indexOf('=');
      const name = (eq === -1 ? head : head.slice(0, eq)).trim().toLowerCase();
      if (name !== 'wait') continue;
      if (eq === -1) return undefined;
      let value = head.slice(eq + 1).trim();
      if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
      if (!/^\d{1,10}$/.test(value)) return undefined;
      return Math.min(Number(value), maxSeconds);
    }
  }
  return undefined;
}
