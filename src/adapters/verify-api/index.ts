/**
 * The sidecar-less SVID verification API (its own listener, default 127.0.0.1:8090): X509-SVID
 * chains and JWT-SVIDs verified against the broker's live bundles, answered with the core
 * verifier's coded result. {@link buildVerifyApiApp} never listens; the daemon runs it with
 * `runApp` from src/admin. See docs/verification.md.
 * @module
 */
export type { VerifyApiAccepted, VerifyApiMetrics, VerifyApiOptions, VerifyApiRefused } from './app.js';
export { buildVerifyApiApp, DEFAULT_VERIFY_BODY_LIMIT, MAX_AUDIENCES } from './app.js';

/** Where the verify API listens unless configured otherwise. */
export const DEFAULT_VERIFY_API_LISTEN = { host: '127.0.0.1', port: 8090 } as const;
