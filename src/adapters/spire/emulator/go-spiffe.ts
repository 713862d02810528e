/**
 * SPIFFE ID and trust domain parsing with the exact acceptance rules and error texts of go-spiffe
 * v2 (`spiffeid.TrustDomainFromString`, `spiffeid.FromString`), which SPIRE's API handlers embed
 * in their messages (e.g. `trust domain argument is not valid: trust domain is missing`). The
 * broker's own parser (src/core/spiffeid) is stricter and words its errors differently; the emulator
 * must answer like SPIRE, so it uses these.
 * @module
 */

/** go-spiffe's error texts (spiffeid/errors.go). */
export const GO_SPIFFE_ERRORS = Object.freeze({
  badTrustDomainChar:
    'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
  badPathSegmentChar:
    'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
  dotSegment: 'path cannot contain dot segments',
  noLeadingSlash: 'path must have a leading slash',
  empty: 'cannot be empty',
  emptySegment: 'path cannot contain empty segments',
  missingTrustDomain: 'trust domain is missing',
  trailingSlash: 'path cannot have a trailing slash',
  wrongScheme: 'scheme is missing or invalid',
});

const SCHEME = 'spiffe://';

function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isPathChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2e ||
    c === 0x2d ||
    c === 0x5f
  );
}

/** Result of a go-spiffe style parse: the value, or go-spiffe's error text. */
export type GoParse<T> = { ok: true; value: T } | { ok: false; error: string };

/** `spiffeid.ValidatePath`: undefined when valid, else the error text. */
export function goValidatePath(path: string): string | undefined {
  if (path === '') return undefined;
  if (!path.startsWith('/')) return GO_SPIFFE_ERRORS.noLeadingSlash;
  let segStart = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x2f) {
      const seg = path.slice(segStart, i);
      if (seg === '/') return GO_SPIFFE_ERRORS.emptySegment;
      if (seg === '/.' || seg === '/..') return GO_SPIFFE_ERRORS.dotSegment;
      segStart = i;
      continue;
    }
    if (!isPathChar(c)) return GO_SPIFFE_ERRORS.badPathSegmentChar;
  }
  const last = path.slice(segStart);
  if (last === '/') return GO_SPIFFE_ERRORS.trailingSlash;
  if (last === '/.' || last === '/..') return GO_SPIFFE_ERRORS.dotSegment;
  return undefined;
}

/** `spiffeid.FromString`: a SPIFFE ID split into trust domain name and path. */
export function goSpiffeIdFromString(id: string): GoParse<{ trustDomain: string; path: string }> {
  if (id === '') return { ok: false, error: GO_SPIFFE_ERRORS.empty };
  if (!id.startsWith(SCHEME)) return { ok: false, error: GO_SPIFFE_ERRORS.wrongScheme };
  let i = SCHEME.length;
  for (; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c === 0x2f) break;
    if (!isTrustDomainChar(c)) return { ok: false, error: GO_SPIFFE_ERRORS.badTrustDomainChar };
  }
  if (i === SCHEME.length) return { ok: false, error: GO_SPIFFE_ERRORS.missingTrustDomain };
  const path = id.slice(i);
  const err = goValidatePath(path);
  if (err !== undefined) return { ok: false, error: err };
  return { ok: true, value: { trustDomain: id.slice(SCHEME.length, i), path } };
}

/**
 * `spiffeid.TrustDomainFromString`: a bare name, or anything containing `:/` parsed as a SPIFFE
 * ID whose trust domain is taken. Note: no length limit, as in go-spiffe.
 */
export function goTrustDomainFromString(idOrName: string): GoParse<string> {
  if (idOrName === '') return { ok: false, error: GO_SPIFFE_ERRORS.missingTrustDomain };
  if (idOrName.includes(':/')) {
    const id = goSpiffeIdFromString(idOrName);
    return id.ok ? { ok: true, value: id.value.trustDomain } : id;
  }
  for (let i = 0; i < idOrName.length; i++) {
    if (!isTrustDomainChar(idOrName.charCodeAt(i))) {
      return { ok: false, error: GO_SPIFFE_ERRORS.badTrustDomainChar };
    }
  }
  return { ok: true, value: idOrName };
}
