/**
 * The JavaScript shapes of the SPIRE API messages as loaded by {@link loadSpireApi} (keepCase,
 * 64-bit integers as decimal strings, enums as names, defaults on, oneof discriminators).
 *
 * `Wire*` interfaces describe what arrives (every field present; absent messages are `null`).
 * When sending, any subset may be given: 64-bit fields also accept numbers, bytes any Uint8Array.
 * @module
 */

/** `spire.api.types.X509Certificate` */
export interface WireX509Certificate {
  asn1: Uint8Array;
  tainted: boolean;
}

/** `spire.api.types.JWTKey` (and the identically shaped `WITKey`) */
export interface WireJwtKey {
  public_key: Uint8Array;
  key_id: string;
  /** int64 Unix seconds as a decimal string; "0" = no expiry. */
  expires_at: string;
  tainted: boolean;
}

/** `spire.api.types.Bundle` */
export interface WireBundle {
  trust_domain: string;
  x509_authorities: WireX509Certificate[];
  jwt_authorities: WireJwtKey[];
  /** int64 seconds as a decimal string. */
  refresh_hint: string;
  /** uint64 as a decimal string. */
  sequence_number: string;
  wit_authorities: WireJwtKey[];
}

/** `spire.api.types.BundleMask`: `null`/absent means every field. */
export interface WireBundleMask {
  x509_authorities: boolean;
  jwt_authorities: boolean;
  refresh_hint: boolean;
  sequence_number: boolean;
  wit_authorities: boolean;
}

/** `spire.api.types.Status`: a google.rpc.Code number and a message. */
export interface WireStatus {
  code: number;
  message: string;
}

/** `spire.api.types.FederationRelationship` */
export interface WireFederationRelationship {
  trust_domain: string;
  bundle_endpoint_url: string;
  /** The oneof discriminator: which profile is set, if any. */
  bundle_endpoint_profile?: 'https_web' | 'https_spiffe';
  https_web?: Record<string, never> | null;
  https_spiffe?: { endpoint_spiffe_id: string } | null;
  trust_domain_bundle: WireBundle | null;
}

/** `spire.api.types.FederationRelationshipMask` */
export interface WireFederationRelationshipMask {
  bundle_endpoint_url: boolean;
  bundle_endpoint_profile: boolean;
  trust_domain_bundle: boolean;
}

/** `spire.api.types.SPIFFEID` */
export interface WireSpiffeId {
  trust_domain: string;
  path: string;
}

/** `spire.api.types.X509SVID` */
export interface WireX509Svid {
  cert_chain: Uint8Array[];
  id: WireSpiffeId | null;
  expires_at: string;
  hint: string;
}

/** One result of a Batch{Create,Update,Set}FederatedBundle response. */
export interface WireBundleResult {
  status: WireStatus | null;
  bundle: WireBundle | null;
}

/** One result of BatchDeleteFederatedBundle / BatchDeleteFederationRelationship. */
export interface WireDeleteResult {
  status: WireStatus | null;
  trust_domain: string;
}

/** One result of Batch{Create,Update}FederationRelationship. */
export interface WireRelationshipResult {
  status: WireStatus | null;
  federation_relationship: WireFederationRelationship | null;
}

/** `BatchDeleteFederatedBundleRequest.Mode` */
export type WireDeleteMode = 'RESTRICT' | 'DELETE' | 'DISSOCIATE';

/** `grpc.health.v1.HealthCheckResponse.ServingStatus` */
export type WireServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
