/**
 * OpenID Connect discovery for the local trust domain's JWT-SVIDs, on its own listener: the
 * provider metadata document and the JWK Set of the JWT authorities (rendered by
 * src/core/bundle/oidc.ts), following the local bundle as the broker publishes it.
 *
 * - {@link buildOidcDiscoveryApp}: the fastify app (never listens by itself).
 * - Optionally the same per peer (allowlist `oidcIssuer`) at `/peers/<td>/…`.
 * - {@link OidcDiscoveryServer}: `run(signal)` — HTTPS with a configured certificate, or plain
 *   HTTP on loopback behind a TLS-terminating proxy.
 *
 * See docs/configuration.md (`oidc:`).
 * @module
 */
export type { OidcDiscoveryAppOptions, OidcDocument, OidcRequestResult, PeerOidc } from './app.js';
export { buildOidcDiscoveryApp, DEFAULT_OIDC_MAX_AGE_SECONDS, OIDC_PEERS_PREFIX } from './app.js';
export type { OidcDiscoveryServerOptions } from './server.js';
export { OidcDiscoveryServer } from './server.js';
