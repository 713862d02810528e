/**
 * SPIRE server API layer — the only importer of @grpc/grpc-js and @grpc/proto-loader.
 *
 * - {@link SpireServerClient}: typed client of SPIRE v1.15's Bundle, TrustDomain (read), SVID
 *   (MintX509SVID) and gRPC Health services over `unix:///…/api.sock` or mTLS `dns:///host:port`,
 *   with deadlines, retries on UNAVAILABLE/DEADLINE_EXCEEDED, coded {@link SpireError}s and
 *   per-item batch results.
 * - Pure converters between {@link TrustBundle} and `spire.api.types.Bundle` (convert.ts).
 * - {@link loadSpireApi}: our wire-compatible .proto files under proto/, loaded on demand.
 * - The in-process emulator lives in `./emulator/index.js`.
 *
 * @module
 */
export type { SpireAddress } from './address.js';
export { DEFAULT_SPIRE_SOCKET_PATH, DEFAULT_SPIRE_TCP_PORT, parseSpireAddress } from './address.js';
export { DEFAULT_WIRE_BUNDLE_CACHE_ENTRIES, WireBundleCache, wireBundleDigest } from './bundle-cache.js';
export type {
  BatchItemStatus,
  BundleDeleteMode,
  BundleItemResult,
  DeleteItemResult,
  FederatedBundlePage,
  RelationshipPage,
  RetryInfo,
  ServingStatus,
  SpireCallOptions,
  SpireServerClientOptions,
} from './client.js';
export { DEFAULT_PAGE_SIZE, DEFAULT_SPIRE_TIMEOUT_MS, SpireServerClient } from './client.js';
export type {
  BundleEndpointProfile,
  BundleFields,
  BundleFromWireOptions,
  FederationRelationship,
  MintedX509Svid,
  RelationshipFields,
} from './convert.js';
export {
  bundleFromWire,
  bundleMaskToWire,
  bundleToWire,
  parseInt64,
  parseUint64,
  relationshipFromWire,
  relationshipMaskToWire,
  relationshipToWire,
  splitDerSequence,
  x509SvidFromWire,
} from './convert.js';
export type { SpireApiDefinition } from './proto.js';
export {
  defaultProtoDir,
  loadSpireApi,
  PROTO_LOADER_OPTIONS,
  SERVICE_NAMES,
  SPIRE_PROTO_FILES,
} from './proto.js';
export type { RetryPolicy } from './retry.js';
export { DEFAULT_RETRY_POLICY, retryDelayMs } from './retry.js';
export type { GrpcStatusName } from './status.js';
export {
  GRPC_STATUS,
  GRPC_STATUS_NAMES,
  grpcStatusName,
  isRetryableStatus,
  spireErrorCodeFor,
} from './status.js';
export type { SpireTlsOptions } from './tls.js';
export { checkServerSvid, checkTlsOptions } from './tls.js';
export type {
  WireBundle,
  WireBundleMask,
  WireFederationRelationship,
  WireJwtKey,
  WireStatus,
  WireX509Certificate,
  WireX509Svid,
} from './wire.js';
