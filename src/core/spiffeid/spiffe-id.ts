import { SpiffeIdError } from '../../errors.js';
import { TrustDomain, trustDomainNameError } from './trust-domain.js';

/** SPIFFE-ID §2: a SPIFFE ID is at most 2048 bytes (ASCII, so characters = bytes). */
export const MAX_SPIFFE_ID_LENGTH = 2048;

const SCHEME_PREFIX = 'spiffe://';

/** SPIFFE-ID §2.2: path segment characters are `A-Z a-z 0-9 . - _`. */
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

function pathError(path: string): SpiffeIdError | undefined {
  // path is "" or starts with "/".
  let segStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const c = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const seg = path.slice(segStart, i);
      if (seg.length === 0) {
        if (i === path.length) {
          // SPIFFE-ID §2.2: no trailing slash.
          return new SpiffeIdError('ERR_SPIFFEID_TRAILING_SLASH', 'path cannot have a trailing slash');
        }
        // SPIFFE-ID §2.2: no empty segments ("//").
        return new SpiffeIdError('ERR_SPIFFEID_EMPTY_SEGMENT', 'path cannot contain empty segments');
      }
      if (seg === '.' || seg === '..') {
        // SPIFFE-ID §2.2: no relative (dot) segments.
        return new SpiffeIdError('ERR_SPIFFEID_DOT_SEGMENT', 'path cannot contain dot segments');
      }
      segStart = i + 1;
      continue;
    }
    if (isPathChar(c)) continue;
    if (c === 0x3f) {
      return new SpiffeIdError('ERR_SPIFFEID_QUERY', 'a SPIFFE ID must not contain a query');
    }
    if (c === 0x23) {
      return new SpiffeIdError('ERR_SPIFFEID_FRAGMENT', 'a SPIFFE ID must not contain a fragment');
    }
    return new SpiffeIdError(
      'ERR_SPIFFEID_PATH_CHARS',
      `path segment characters are limited to letters, numbers, dots, dashes, and underscores (got ${JSON.stringify(path[i])} at path index ${i})`,
    );
  }
  return undefined;
}

/**
 * A SPIFFE ID (SPIFFE-ID §2): `spiffe://<trust domain><path>`.
 *
 * Only obtainable by parsing, so holding one proves it is valid.
 *
 * @example
 * const id = SpiffeId.parse('spiffe://example.org/ns/prod/sa/web');
 * id.trustDomain.name; // 'example.org'
 * id.path;             // '/ns/prod/sa/web'
 */
export class SpiffeId {
  readonly trustDomain: TrustDomain;
  /** The path, `''` or starting with `/`. */
  readonly path: string;
  readonly #str: string;

  private constructor(trustDomain: TrustDomain, path: string, str: string) {
    this.trustDomain = trustDomain;
    this.path = path;
    this.#str = str;
  }

  /** @throws SpiffeIdError naming the first violated rule. */
  static parse(value: string): SpiffeId {
    const r = SpiffeId.#parse(value);
    if (r instanceof SpiffeIdError) throw r;
    return r;
  }

  /** Like {@link SpiffeId.parse} but returns `undefined` instead of throwing. */
  static tryParse(value: string): SpiffeId | undefined {
    const r = SpiffeId.#parse(value);
    return r instanceof SpiffeIdError ? undefined : r;
  }

  /** Builds `spiffe://<td><path>`; `path` must be `''` or start with `/`. @throws SpiffeIdError */
  static fromPath(trustDomain: TrustDomain, path: string): SpiffeId {
    if (path !== '' && !path.startsWith('/')) {
      throw new SpiffeIdError('ERR_SPIFFEID_PATH_CHARS', 'path must be empty or start with "/"');
    }
    return SpiffeId.parse(trustDomain.idString() + path);
  }

  static #parse(value: string): SpiffeId | SpiffeIdError {
    if (value.length === 0) return new SpiffeIdError('ERR_SPIFFEID_EMPTY', 'SPIFFE ID cannot be empty');
    // SPIFFE-ID §2: the scheme is exactly "spiffe" (lower case) followed by "://".
    if (!value.startsWith(SCHEME_PREFIX)) {
      return new SpiffeIdError('ERR_SPIFFEID_SCHEME', 'scheme is missing or invalid');
    }
    if (value.length > MAX_SPIFFE_ID_LENGTH) {
      return new SpiffeIdError(
        'ERR_SPIFFEID_TOO_LONG',
        `SPIFFE ID is ${value.length} bytes; the maximum is ${MAX_SPIFFE_ID_LENGTH}`,
      );
    }
    const rest = value.slice(SCHEME_PREFIX.length);
    let end = rest.length;
    for (let i = 0; i < rest.length; i++) {
      const c = rest.charCodeAt(i);
      if (c === 0x2f || c === 0x3f || c === 0x23) {
        end = i;
        break;
      }
    }
    const tdName = rest.slice(0, end);
    const tail = rest.slice(end);
    if (tdName.length === 0) {
      return new SpiffeIdError('ERR_SPIFFEID_TRUST_DOMAIN_MISSING', 'trust domain is missing');
    }
    const tdErr = trustDomainNameError(tdName);
    if (tdErr) return tdErr;
    if (tail.startsWith('?'))
      return new SpiffeIdError('ERR_SPIFFEID_QUERY', 'a SPIFFE ID must not contain a query');
    if (tail.startsWith('#')) {
      return new SpiffeIdError('ERR_SPIFFEID_FRAGMENT', 'a SPIFFE ID must not contain a fragment');
    }
    const pErr = pathError(tail);
    if (pErr) return pErr;
    return new SpiffeId(TrustDomain.fromValidated(tdName), tail, value);
  }

  /** True when this ID belongs to `td`. */
  memberOf(td: TrustDomain): boolean {
    return this.trustDomain.name === td.name;
  }

  equals(other: SpiffeId): boolean {
    return this.#str === other.#str;
  }

  toString(): string {
    return this.#str;
  }

  toJSON(): string {
    return this.#str;
  }
}
