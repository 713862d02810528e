import { SpiffeIdError } from '../../errors.js';

/** SPIFFE-ID §2.1: a trust domain name is at most 255 bytes. */
export const MAX_TRUST_DOMAIN_LENGTH = 255;

const SCHEME_PREFIX = 'spiffe://';

/** SPIFFE-ID §2.1: trust domain characters are `a-z`, `0-9`, `.`, `-` and `_` (lower case only). */
function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

/**
 * Validates the trust-domain part of a SPIFFE ID or a bare trust domain name and returns an error
 * naming the first violated rule, or `undefined` when valid. Shared by {@link TrustDomain.parse} and
 * `SpiffeId.parse`.
 * @internal
 */
export function trustDomainNameError(name: string): SpiffeIdError | undefined {
  if (name.length === 0) {
    return new SpiffeIdError('ERR_SPIFFEID_TRUST_DOMAIN_MISSING', 'trust domain is missing');
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (isTrustDomainChar(c)) continue;
    // SPIFFE-ID §2.1: the authority component carries no port and no userinfo.
    if (c === 0x3a) {
      return new SpiffeIdError('ERR_SPIFFEID_PORT', `trust domain "${name}" must not include a port`);
    }
    if (c === 0x40) {
      return new SpiffeIdError('ERR_SPIFFEID_USERINFO', `trust domain "${name}" must not include user info`);
    }
    return new SpiffeIdError(
      'ERR_SPIFFEID_TRUST_DOMAIN_CHARS',
      `trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (got ${JSON.stringify(name[i])} at index ${i})`,
    );
  }
  if (name.length > MAX_TRUST_DOMAIN_LENGTH) {
    return new SpiffeIdError(
      'ERR_SPIFFEID_TRUST_DOMAIN_TOO_LONG',
      `trust domain is ${name.length} bytes; the maximum is ${MAX_TRUST_DOMAIN_LENGTH}`,
    );
  }
  return undefined;
}

/**
 * A SPIFFE trust domain name (SPIFFE-ID §2.1), e.g. `example.org`.
 *
 * Only obtainable through {@link TrustDomain.parse} / {@link TrustDomain.tryParse}, so holding one
 * proves the name is valid. Two instances with the same name are {@link TrustDomain.equals equal};
 * compare names with `===` on {@link TrustDomain.name} for map keys.
 *
 * @example
 * const td = TrustDomain.parse('example.org');
 * td.idString(); // 'spiffe://example.org'
 */
export class TrustDomain {
  /** The bare name, e.g. `example.org`. */
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
  }

  /**
   * Parses a bare trust domain name. `spiffe://` forms are refused here: use
   * {@link TrustDomain.parseNameOrId} where SPIRE's looser input is wanted.
   * @throws SpiffeIdError
   */
  static parse(name: string): TrustDomain {
    if (name.length === 0) {
      throw new SpiffeIdError('ERR_SPIFFEID_TRUST_DOMAIN_MISSING', 'trust domain is missing');
    }
    const err = trustDomainNameError(name);
    if (err) throw err;
    return new TrustDomain(name);
  }

  /** Like {@link TrustDomain.parse} but returns `undefined` instead of throwing. */
  static tryParse(name: string): TrustDomain | undefined {
    return trustDomainNameError(name) ? undefined : new TrustDomain(name);
  }

  /**
   * Accepts a bare name or a SPIFFE ID (`spiffe://example.org[/path]`) and returns its trust domain,
   * as SPIRE's server API does for `trust_domain` fields.
   * @throws SpiffeIdError
   */
  static parseNameOrId(value: string): TrustDomain {
    if (value.includes(':/')) {
      if (!value.startsWith(SCHEME_PREFIX)) {
        throw new SpiffeIdError('ERR_SPIFFEID_SCHEME', 'scheme is missing or invalid');
      }
      const rest = value.slice(SCHEME_PREFIX.length);
      const slash = rest.indexOf('/');
      return TrustDomain.parse(slash === -1 ? rest : rest.slice(0, slash));
    }
    return TrustDomain.parse(value);
  }

  /** @internal Used by SpiffeId.parse after validating the name itself. */
  static fromValidated(name: string): TrustDomain {
    return new TrustDomain(name);
  }

  /** The trust domain's own SPIFFE ID string, `spiffe://<name>`. */
  idString(): string {
    return SCHEME_PREFIX + this.name;
  }

  equals(other: TrustDomain): boolean {
    return this.name === other.name;
  }

  toString(): string {
    return this.name;
  }

  toJSON(): string {
    return this.name;
  }
}
