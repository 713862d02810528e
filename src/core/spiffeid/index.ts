/**
 * SPIFFE IDs and trust domain names as value objects, parsed exactly per the SPIFFE-ID
 * specification, plus matchers for authorization. Pure: no I/O, no dependencies.
 * @module
 */
export type { SpiffeIdMatcher } from './matcher.js';
export { matchAny, matchId, matchMemberOf, matchOneOf } from './matcher.js';
export { MAX_SPIFFE_ID_LENGTH, SpiffeId } from './spiffe-id.js';
export { MAX_TRUST_DOMAIN_LENGTH, TrustDomain } from './trust-domain.js';
