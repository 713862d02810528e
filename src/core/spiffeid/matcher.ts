import type { SpiffeId } from './spiffe-id.js';
import type { TrustDomain } from './trust-domain.js';

/**
 * Decides whether a peer's SPIFFE ID is authorized. Matchers are plain predicates so they compose
 * (`(id) => a(id) && b(id)`) and can carry a description for error messages.
 */
export interface SpiffeIdMatcher {
  (id: SpiffeId): boolean;
  /** Human-readable description, used in refusal messages. */
  readonly description: string;
}

function make(description: string, fn: (id: SpiffeId) => boolean): SpiffeIdMatcher {
  return Object.assign(fn, { description });
}

/** Matches any valid SPIFFE ID. */
export function matchAny(): SpiffeIdMatcher {
  return make('any SPIFFE ID', () => true);
}

/** Matches exactly `expected`. */
export function matchId(expected: SpiffeId): SpiffeIdMatcher {
  return make(`exactly ${expected.toString()}`, (id) => id.equals(expected));
}

/** Matches any of `expected` (at least one). */
export function matchOneOf(...expected: SpiffeId[]): SpiffeIdMatcher {
  if (expected.length === 0) throw new TypeError('matchOneOf needs at least one SPIFFE ID');
  const set = new Set(expected.map((e) => e.toString()));
  return make(`one of ${[...set].join(', ')}`, (id) => set.has(id.toString()));
}

/** Matches every ID in trust domain `td`. */
export function matchMemberOf(td: TrustDomain): SpiffeIdMatcher {
  return make(`a member of ${td.name}`, (id) => id.trustDomain.name === td.name);
}
