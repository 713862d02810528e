/**
 * Sidecar-less SVID verification (`spiffe-broker/verify`): X509-SVID chains and JWT-SVIDs checked
 * against a {@link BundleSource} — always the bundle of the SVID's own trust domain, never merged —
 * per the X509-SVID and JWT-SVID specifications. Results are discriminated unions with a stable
 * code and a reason; bad SVIDs never throw. Pure but for node:crypto: the time is always passed in
 * (`opts.now`), nothing is scheduled, nothing is read from the environment.
 *
 * @example
 * import { verifyX509Svid, verifyJwtSvid, X509VerifyCache } from 'spiffe-broker/verify';
 * const cache = new X509VerifyCache();
 * const r = verifyX509Svid(peerChainDer, bundles, { now: Date.now(), cache });
 * const j = verifyJwtSvid(token, bundles, { now: Date.now(), audience: 'spiffe://example.org/api' });
 * @module
 */
export type { BundleSource } from '../bundle/source.js';
export type { JwtSvidVerified, JwtSvidVerifyResult, VerifyJwtSvidOptions } from './jwt-svid.js';
export { DEFAULT_JWT_LEEWAY_SECONDS, MAX_JWT_SVID_LENGTH, MIN_RSA_BITS, verifyJwtSvid } from './jwt-svid.js';
export type { VerifyFailure } from './result.js';
export { verifyFailureToError } from './result.js';
export type { X509VerifyCacheOptions, X509VerifyCacheStats } from './x509-cache.js';
export { DEFAULT_X509_CACHE_ENTRIES, X509VerifyCache } from './x509-cache.js';
export type { VerifyX509SvidOptions, X509SvidVerified, X509SvidVerifyResult } from './x509-svid.js';
export { DEFAULT_MAX_X509_CHAIN_LENGTH, verifyX509Svid } from './x509-svid.js';
