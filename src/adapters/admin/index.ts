/**
 * The admin API: health and readiness, Prometheus metrics, the broker's status, the bundles it
 * holds, what a reconcile would change — a fastify app factory ({@link buildAdminApp}, never
 * listening by itself) and a runner ({@link runAdmin}: loopback by default, a Unix socket as an
 * option, mTLS with admin SPIFFE IDs beyond loopback). Also the typed shapes of its answers and
 * the small client the CLI uses. See docs/verification.md ("Admin API").
 * @module
 */
export type { AdminAppOptions, AdminMtlsOptions, Readiness } from './app.js';
export { buildAdminApp, buildHealthApp, DEFAULT_ADMIN_LISTEN, isLoopbackHost, runAdmin } from './app.js';
export type { AdminTarget, HttpGet, HttpGetResponse } from './client.js';
export { adminGetJson, adminPostJson, describeTarget, nodeHttpGet } from './client.js';
export type { RequestGuardOptions } from './guard.js';
export { defaultAllowedHosts, installRequestGuards, parseHostHeader } from './guard.js';
export type { ErrorBody, ListenTarget, RunAppOptions } from './http.js';
export { installCodedErrors, runApp, sendError, toApiError } from './http.js';
export type {
  BrokerStatus,
  BrokerStatusInputs,
  DiffChange,
  DriftEntry,
  OutputsStatus,
  PeerStatus,
  ReconcileDiff,
  ServerDiff,
  ServerPeerStatus,
  StatusReason,
} from './status.js';
export {
  authorityExpiresIn,
  BROKER_STATUS_SCHEMA,
  brokerStatusFrom,
  RECONCILE_DIFF_SCHEMA,
  toRfc3339,
} from './status.js';
export type { AdminToken, AdminTokenFs } from './token.js';
export { ADMIN_TOKEN_FILE, ensureAdminToken, nodeAdminTokenFs, parseAdminToken } from './token.js';
