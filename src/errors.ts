/**
 * The broker's one coded error hierarchy.
 *
 * Every failure caused by input — a peer's bundle, an operator's config, a SPIRE answer, an SVID
 * presented for verification — is a {@link BrokerError} with a stable `code`. Codes never change
 * meaning once released; docs/errors.md lists every one (a test fails when one is missing).
 * Programming mistakes (calling an API wrongly) are plain `TypeError`s instead.
 *
 * Subclasses group codes by module so callers can `instanceof` a family, and `switch (err.code)`
 * narrows on the {@link ErrorCode} union.
 *
 * @module
 */

/** SPIFFE ID and trust domain name syntax (SPIFFE-ID spec §2). */
export type SpiffeIdErrorCode =
  | 'ERR_SPIFFEID_EMPTY'
  | 'ERR_SPIFFEID_SCHEME'
  | 'ERR_SPIFFEID_TRUST_DOMAIN_MISSING'
  | 'ERR_SPIFFEID_TRUST_DOMAIN_CHARS'
  | 'ERR_SPIFFEID_TRUST_DOMAIN_TOO_LONG'
  | 'ERR_SPIFFEID_PORT'
  | 'ERR_SPIFFEID_USERINFO'
  | 'ERR_SPIFFEID_QUERY'
  | 'ERR_SPIFFEID_FRAGMENT'
  | 'ERR_SPIFFEID_PATH_CHARS'
  | 'ERR_SPIFFEID_EMPTY_SEGMENT'
  | 'ERR_SPIFFEID_DOT_SEGMENT'
  | 'ERR_SPIFFEID_TRAILING_SLASH'
  | 'ERR_SPIFFEID_TOO_LONG';

/** SPIFFE bundle documents and Bundle Maps (SPIFFE Trust Domain and Bundle spec). */
export type BundleErrorCode =
  | 'ERR_BUNDLE_TOO_LARGE'
  | 'ERR_BUNDLE_ENCODING'
  | 'ERR_BUNDLE_JSON_SYNTAX'
  | 'ERR_BUNDLE_JSON_DEPTH'
  | 'ERR_BUNDLE_JSON_DUPLICATE_MEMBER'
  | 'ERR_BUNDLE_NOT_OBJECT'
  | 'ERR_BUNDLE_KEYS_MISSING'
  | 'ERR_BUNDLE_KEYS_NOT_ARRAY'
  | 'ERR_BUNDLE_TOO_MANY_KEYS'
  | 'ERR_BUNDLE_KEY_NOT_OBJECT'
  | 'ERR_BUNDLE_KEY_MEMBER_TYPE'
  | 'ERR_BUNDLE_SEQUENCE_INVALID'
  | 'ERR_BUNDLE_REFRESH_HINT_INVALID'
  | 'ERR_BUNDLE_X5C_COUNT'
  | 'ERR_BUNDLE_X5C_ENCODING'
  | 'ERR_BUNDLE_X5C_CERTIFICATE'
  | 'ERR_BUNDLE_X5C_NOT_CA'
  | 'ERR_BUNDLE_X5C_KEY_MISMATCH'
  | 'ERR_BUNDLE_X509_DUPLICATE'
  | 'ERR_BUNDLE_JWK_INVALID'
  | 'ERR_BUNDLE_JWT_KID_MISSING'
  | 'ERR_BUNDLE_JWT_KID_DUPLICATE'
  | 'ERR_BUNDLE_TRUST_DOMAIN_MISMATCH'
  | 'ERR_BUNDLE_MAP_INVALID'
  | 'ERR_BUNDLE_MAP_DUPLICATE_TRUST_DOMAIN'
  | 'ERR_BUNDLE_PEM_INVALID'
  | 'ERR_BUNDLE_UNPARSABLE'
  | 'ERR_BUNDLE_JWT_KID_TOO_LONG';

/** X509-SVID and JWT-SVID verification outcomes (X509-SVID spec, JWT-SVID spec). */
export type VerifyErrorCode =
  | 'ERR_VERIFY_INPUT'
  | 'ERR_VERIFY_NO_BUNDLE'
  | 'ERR_VERIFY_BUNDLE_REVOKED'
  | 'ERR_VERIFY_X509_CERTIFICATE'
  | 'ERR_VERIFY_X509_NO_SPIFFE_ID'
  | 'ERR_VERIFY_X509_URI_SAN_COUNT'
  | 'ERR_VERIFY_X509_LEAF_IS_CA'
  | 'ERR_VERIFY_X509_LEAF_KEY_USAGE'
  | 'ERR_VERIFY_X509_INTERMEDIATE_NOT_CA'
  | 'ERR_VERIFY_X509_EXPIRED'
  | 'ERR_VERIFY_X509_NOT_YET_VALID'
  | 'ERR_VERIFY_X509_UNTRUSTED'
  | 'ERR_VERIFY_X509_CHAIN_TOO_LONG'
  | 'ERR_VERIFY_ID_NOT_AUTHORIZED'
  | 'ERR_VERIFY_JWT_MALFORMED'
  | 'ERR_VERIFY_JWT_ALGORITHM'
  | 'ERR_VERIFY_JWT_KID_MISSING'
  | 'ERR_VERIFY_JWT_KEY_NOT_FOUND'
  | 'ERR_VERIFY_JWT_SIGNATURE'
  | 'ERR_VERIFY_JWT_SUBJECT'
  | 'ERR_VERIFY_JWT_AUDIENCE'
  | 'ERR_VERIFY_JWT_EXPIRY_MISSING'
  | 'ERR_VERIFY_JWT_EXPIRED'
  | 'ERR_VERIFY_JWT_NOT_YET_VALID'
  | 'ERR_VERIFY_CSR_INVALID'
  | 'ERR_VERIFY_X509_LEAF_ID_ROOT'
  | 'ERR_VERIFY_X509_PATH_LENGTH'
  | 'ERR_VERIFY_JWT_HEADER'
  | 'ERR_VERIFY_X509_SIGNATURE_ALGORITHM'
  | 'ERR_VERIFY_X509_KEY';

/** Configuration and allowlist files. */
export type ConfigErrorCode =
  | 'ERR_CONFIG_READ'
  | 'ERR_CONFIG_YAML'
  | 'ERR_CONFIG_SCHEMA'
  | 'ERR_CONFIG_TRUST_DOMAIN'
  | 'ERR_CONFIG_DUPLICATE_PEER'
  | 'ERR_CONFIG_LOCAL_TRUST_DOMAIN'
  | 'ERR_CONFIG_URL'
  | 'ERR_CONFIG_UNKNOWN_SERVER'
  | 'ERR_CONFIG_FILE'
  | 'ERR_CONFIG_PROFILE'
  | 'ERR_CONFIG_ADDRESS';

/** Talking to SPIRE servers through their gRPC server API. */
export type SpireErrorCode =
  | 'ERR_SPIRE_ADDRESS'
  | 'ERR_SPIRE_UNAVAILABLE'
  | 'ERR_SPIRE_DEADLINE'
  | 'ERR_SPIRE_PERMISSION_DENIED'
  | 'ERR_SPIRE_NOT_FOUND'
  | 'ERR_SPIRE_ALREADY_EXISTS'
  | 'ERR_SPIRE_INVALID_ARGUMENT'
  | 'ERR_SPIRE_FAILED_PRECONDITION'
  | 'ERR_SPIRE_INTERNAL'
  | 'ERR_SPIRE_UNIMPLEMENTED'
  | 'ERR_SPIRE_RPC'
  | 'ERR_SPIRE_CONVERSION'
  | 'ERR_SPIRE_CREDENTIALS'
  | 'ERR_SPIRE_BATCH_ITEM'
  | 'ERR_SPIRE_REVOCATION_BLOCKED'
  | 'ERR_SPIRE_RELATIONSHIP_CONFLICT'
  | 'ERR_SPIRE_UNAUTHENTICATED'
  | 'ERR_SPIRE_ABORTED'
  | 'ERR_SPIRE_RESPONSE';

/** Fetching a peer's bundle from its bundle endpoint (SPIFFE Federation spec §5). */
export type FetchErrorCode =
  | 'ERR_FETCH_URL'
  | 'ERR_FETCH_INSECURE_SCHEME'
  | 'ERR_FETCH_CONNECT'
  | 'ERR_FETCH_TIMEOUT'
  | 'ERR_FETCH_TLS'
  | 'ERR_FETCH_ENDPOINT_ID'
  | 'ERR_FETCH_STATUS'
  | 'ERR_FETCH_BODY_TOO_LARGE'
  | 'ERR_FETCH_REDIRECT'
  | 'ERR_FETCH_NO_BOOTSTRAP_BUNDLE'
  | 'ERR_FETCH_ABORTED'
  | 'ERR_FETCH_PROTOCOL';

/** Serving the local trust domain's bundle endpoint (SPIFFE Federation §5.2). */
export type EndpointErrorCode =
  | 'ERR_ENDPOINT_TLS_FILE'
  | 'ERR_ENDPOINT_TLS_CREDENTIALS'
  | 'ERR_ENDPOINT_SVID'
  | 'ERR_ENDPOINT_LISTEN'
  | 'ERR_ENDPOINT_RELAY_NOT_FOUND'
  | 'ERR_ENDPOINT_OIDC_NOT_FOUND'
  | 'ERR_ENDPOINT_OIDC_NOT_READY';

/** Decisions on validated peer bundles (allowlist policy, rollback, revocation). */
export type PolicyErrorCode =
  | 'ERR_POLICY_SEQUENCE_ROLLBACK'
  | 'ERR_POLICY_TOO_MANY_KEYS'
  | 'ERR_POLICY_KEY_TYPE'
  | 'ERR_POLICY_RSA_TOO_SMALL'
  | 'ERR_POLICY_EMPTY_BUNDLE_REFUSED'
  | 'ERR_POLICY_NOT_ALLOWLISTED'
  | 'ERR_PEER_STALE'
  | 'ERR_PEER_REMOVED'
  | 'ERR_PEER_REVOKED_ALL_KEYS'
  | 'ERR_PEER_REVOKING'
  | 'ERR_POLICY_TRUST_DOMAIN_MISMATCH'
  | 'ERR_POLICY_SEQUENCE_REUSED'
  | 'ERR_POLICY_BUNDLE_TOO_LARGE';

/** Persistent state, audit trail and the CLI. */
export type RuntimeErrorCode =
  | 'ERR_STATE_CORRUPT'
  | 'ERR_STATE_WRITE'
  | 'ERR_STATE_READ'
  | 'ERR_STATE_LOCKED'
  | 'ERR_STATE_PERMISSIONS'
  | 'ERR_LISTEN'
  | 'ERR_AUDIT_CHAIN_BROKEN'
  | 'ERR_AUDIT_SIGNATURE'
  | 'ERR_AUDIT_RECORD'
  | 'ERR_AUDIT_KEY'
  | 'ERR_AUDIT_WRITE'
  | 'ERR_USAGE'
  | 'ERR_IO';

/** The Kubernetes integration: API server calls, custom resources, bundle ConfigMaps. */
export type K8sErrorCode =
  | 'ERR_K8S_CONFIG'
  | 'ERR_K8S_UNAVAILABLE'
  | 'ERR_K8S_FORBIDDEN'
  | 'ERR_K8S_NOT_FOUND'
  | 'ERR_K8S_CONFLICT'
  | 'ERR_K8S_GONE'
  | 'ERR_K8S_INVALID'
  | 'ERR_K8S_RESPONSE'
  | 'ERR_K8S_REFERENCE'
  | 'ERR_K8S_FOREIGN_OBJECT';

/** The admin API, the verify API, and the CLI's admin client. */
export type ApiErrorCode =
  | 'ERR_API_BAD_REQUEST'
  | 'ERR_API_BODY_TOO_LARGE'
  | 'ERR_API_MEDIA_TYPE'
  | 'ERR_API_NOT_FOUND'
  | 'ERR_API_NOT_IMPLEMENTED'
  | 'ERR_API_INTERNAL'
  | 'ERR_API_CONNECT'
  | 'ERR_API_HOST'
  | 'ERR_API_CROSS_SITE'
  | 'ERR_API_UNAUTHORIZED'
  | 'ERR_API_TOKEN'
  | 'ERR_API_RESPONSE';

/** Sidecar-less mTLS (`spiffe-broker/tls`) and the cross-domain mTLS probe. */
export type MtlsErrorCode =
  | 'ERR_MTLS_SVID'
  | 'ERR_MTLS_CONNECT'
  | 'ERR_MTLS_TIMEOUT'
  | 'ERR_MTLS_HANDSHAKE'
  | 'ERR_MTLS_PROBE_PROTOCOL'
  | 'ERR_MTLS_PROBE_BUNDLES'
  | 'ERR_MTLS_PROBE_RATE_LIMITED';

/** Hub outputs: bundle files for other consumers and `spiffe-broker export`. */
export type OutputErrorCode = 'ERR_OUTPUT_FORMAT' | 'ERR_OUTPUT_TRUST_DOMAIN' | 'ERR_OUTPUT_WRITE';

/** Every error code the broker can produce. */
export type ErrorCode =
  | SpiffeIdErrorCode
  | BundleErrorCode
  | VerifyErrorCode
  | ConfigErrorCode
  | SpireErrorCode
  | FetchErrorCode
  | EndpointErrorCode
  | PolicyErrorCode
  | RuntimeErrorCode
  | K8sErrorCode
  | ApiErrorCode
  | MtlsErrorCode
  | OutputErrorCode;

/**
 * Base class of every coded broker error.
 *
 * @example
 * try { parseBundle(td, bytes); } catch (err) {
 *   if (err instanceof BrokerError) console.log(err.code, err.message);
 * }
 */
export class BrokerError<C extends ErrorCode = ErrorCode> extends Error {
  /** Stable, documented machine-readable code (see docs/errors.md). */
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  override get name(): string {
    return this.constructor.name;
  }

  /** A plain object for JSON output (`{ code, message }`), never a stack. */
  toJSON(): { code: C; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** A string is not a valid SPIFFE ID or trust domain name. */
export class SpiffeIdError extends BrokerError<SpiffeIdErrorCode> {}
/** A bundle document or Bundle Map was refused. */
export class BundleError extends BrokerError<BundleErrorCode> {}
/** An SVID could not be verified. */
export class VerifyError extends BrokerError<VerifyErrorCode> {}
/** A configuration or allowlist file was refused. */
export class ConfigError extends BrokerError<ConfigErrorCode> {}
/** A SPIRE server API call failed. */
export class SpireError extends BrokerError<SpireErrorCode> {}
/** A bundle endpoint fetch failed. */
export class FetchError extends BrokerError<FetchErrorCode> {}
/** The bundle endpoint could not serve: unusable TLS credentials or endpoint SVID, or no socket. */
export class EndpointError extends BrokerError<EndpointErrorCode> {}
/** A validated bundle was refused by policy. */
export class PolicyError extends BrokerError<PolicyErrorCode> {}
/** State, audit or CLI failures. */
export class RuntimeError extends BrokerError<RuntimeErrorCode> {}

/** A Kubernetes API call failed, or a custom resource or ConfigMap could not be used. */
export class K8sError extends BrokerError<K8sErrorCode> {}
/** An admin or verify API request was refused, or the admin API could not be reached. */
export class ApiError extends BrokerError<ApiErrorCode> {}
/** An mTLS connection or probe failed for a reason other than a refused SVID. */
export class MtlsError extends BrokerError<MtlsErrorCode> {}

/** An output (bundle file, export) could not be rendered or written. */
export class OutputError extends BrokerError<OutputErrorCode> {}

/** True when `err` is a broker error (any family). */
export function isBrokerError(err: unknown): err is BrokerError {
  return err instanceof BrokerError;
}
