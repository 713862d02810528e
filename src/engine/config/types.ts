import type { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import type { ConfigErrorCode } from '../../errors.js';
import type { OutputsConfig } from './outputs-config.js';

/**
 * Typed, validated configuration. Produced only by the parsers in this module from YAML text;
 * every other module takes these types, never raw YAML. Paths are kept as strings: reading the
 * files they name is the daemon's job (through injected fs).
 * @module
 */

/** How a peer's bundle endpoint is authenticated (SPIFFE Federation §5.2). */
export type EndpointProfileConfig =
  | {
      readonly kind: 'https_web';
      /** PEM file of a private CA to trust instead of the system roots (optional). */
      readonly caFile?: string;
    }
  | {
      readonly kind: 'https_spiffe';
      /** The SPIFFE ID the endpoint server must present (Federation §5.2.2.2). */
      readonly endpointSpiffeId: SpiffeId;
      /**
       * SPIFFE bundle file used to authenticate the first connection when the endpoint is
       * self-serving (Federation §5.2.2.2 / §5.2.2.4). After that the latest accepted bundle is used.
       */
      readonly bootstrapBundleFile?: string;
    };

/** Limits on what a peer may publish, checked after parsing (policy module). */
export interface KeyPolicyConfig {
  /** Maximum authorities (X.509 + JWT) in one bundle. */
  readonly maxKeys?: number;
  /** Allowed JWK key types, e.g. ['EC', 'RSA']. Default: EC, RSA, OKP. */
  readonly allowedKeyTypes?: readonly ('EC' | 'RSA' | 'OKP')[];
  /** Allowed EC / OKP curves, e.g. ['P-256', 'P-384']. Default: P-256, P-384, P-521, Ed25519. */
  readonly allowedCurves?: readonly string[];
  /** Minimum RSA modulus size in bits. Default 2048. */
  readonly minRsaBits?: number;
  /** Largest accepted bundle, bytes as served in the broker's Bundle Map. Default 64 KiB. */
  readonly maxBundleBytes?: number;
}

/** One allowlist entry: a trust domain the local domain explicitly chose to trust. */
export interface PeerConfig {
  readonly trustDomain: TrustDomain;
  /** One or more https URLs, tried in order (failover). Never used to infer the trust domain. */
  readonly urls: readonly URL[];
  readonly profile: EndpointProfileConfig;
  /**
   * Clamp of the poll interval, seconds. Defaults [1, 300]. `maxHintSeconds` caps the peer's
   * refresh hint wherever it is used (stale window, schedule); default one day when absent.
   */
  readonly refresh: {
    readonly minIntervalSeconds: number;
    readonly maxIntervalSeconds: number;
    readonly maxHintSeconds?: number;
  };
  readonly keyPolicy: KeyPolicyConfig;
  /** Names of local SPIRE servers that receive this bundle, or 'all'. */
  readonly targetServers: 'all' | readonly string[];
  /** Whether the peer may revoke everything by publishing an empty `keys` array. Default false. */
  readonly allowEmptyBundle: boolean;
  /**
   * The peer broker's cross-domain mTLS probe port (its `probe.listen`), and the SPIFFE ID it must
   * present (default: the endpoint SPIFFE ID for https_spiffe, else any member of its domain).
   */
  readonly probe?: { readonly host: string; readonly port: number; readonly expectedId?: SpiffeId };
  /**
   * Relay the peer's accepted bundle on the broker's bundle endpoint at `/bundles/<trust domain>`
   * (e.g. for Istio's `caCertificates[].spiffeBundleUrl`). Absent (default): not relayed.
   */
  readonly relay?: true;
  /**
   * The `iss` of the peer's JWT-SVIDs (its SPIRE's `jwt_issuer`): publishes OIDC discovery for
   * them on the broker's OIDC listener at `/peers/<trust domain>/…`. Absent: not published.
   */
  readonly oidcIssuer?: string;
  /** 1-based line of the entry in its file, for messages. */
  readonly line?: number;
}

/** A loaded allowlist. */
export interface Allowlist {
  readonly peers: readonly PeerConfig[];
  /** Lower-case hex SHA-256 of the source text: identifies the version in audit records and status. */
  readonly version: string;
}

/** A position-precise configuration problem. */
export interface ConfigIssue {
  readonly line: number;
  readonly column: number;
  /** JSON-pointer-like path, e.g. `/peers/2/bundleEndpoint/urls/0`. */
  readonly path: string;
  readonly message: string;
  /** The most specific code for this problem (`ERR_CONFIG_SCHEMA` for plain structure problems). */
  readonly code: ConfigErrorCode;
  /**
   * The file the problem is in, when it is not the file being read (a broker config's allowlist
   * file, checked by `checkReferencedFiles`). Absent: the file being read.
   */
  readonly file?: string;
}

/** A `host:port` listen address. IPv6 hosts are written `[::1]:8443` and stored without brackets. */
export interface ListenAddress {
  readonly host: string;
  /** 0 asks the OS for a free port (tests). */
  readonly port: number;
}

/** One local SPIRE server the broker talks to through its gRPC server API. */
export interface SpireServerConfig {
  /** Unique name, referenced by `spire.source` and allowlist `spireServers`. */
  readonly name: string;
  /** `unix:///absolute/path.sock` or `dns:///host:port` (the latter needs the three files below). */
  readonly address: string;
  /** PEM X509-SVID presented to SPIRE over TCP (an admin ID in SPIRE's `admin_ids`). */
  readonly adminCertFile?: string;
  readonly adminKeyFile?: string;
  /** PEM/SPIFFE bundle used to authenticate the SPIRE server over TCP. */
  readonly serverBundleFile?: string;
  /** Per-call deadline in milliseconds. Default 10 000. */
  readonly timeoutMs: number;
}

/** How the broker serves its own bundle (SPIFFE Federation §5.2). */
export interface BundleEndpointConfig {
  readonly listen: ListenAddress;
  readonly profile: 'https_web' | 'https_spiffe';
  /** PEM certificate chain and key served with https_web (required there), or an X509-SVID for https_spiffe. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** The endpoint's SPIFFE ID with https_spiffe. Default `spiffe://<trustDomain>/spiffe-broker`. */
  readonly spiffeId?: SpiffeId;
  /** SPIFFE Workload API socket the https_spiffe X509-SVID comes from (when no certFile/keyFile). */
  readonly workloadApiSocket?: string;
  /** `spiffe_refresh_hint` published, seconds. Default 300. */
  readonly refreshHintSeconds: number;
  /** How often the source SPIRE server's bundle is polled for changes, milliseconds. Default 250. */
  readonly pollIntervalMs: number;
  /** HTTP path that also serves a Bundle Map, e.g. `/bundle-map`. Absent: no map. */
  readonly bundleMapPath?: string;
  /** Include the accepted federated bundles in the Bundle Map (default false: local bundle only). */
  readonly serveFederatedInMap: boolean;
  /** Upper bound on requests held open waiting for a change (long poll). Default 1000. */
  readonly maxHeldRequests: number;
  /** A connection must finish its TLS handshake within this time, milliseconds. Default 10 000. */
  readonly handshakeTimeoutMs: number;
  /** Most open connections from one source address. Default 256. */
  readonly maxConnectionsPerAddress: number;
}

/** The admin API: loopback TCP or a Unix socket; mTLS with `adminIds` otherwise. */
export interface AdminConfig {
  /** Exactly one of listen / socket is set. Default listen 127.0.0.1:8089. */
  readonly listen?: ListenAddress;
  readonly socket?: string;
  /** SPIFFE IDs allowed to call the admin API over mTLS (required when listen is not loopback). */
  readonly adminIds: readonly SpiffeId[];
}

/** The SVID verification API. */
export interface VerifyApiConfig {
  /** Default 127.0.0.1:8090. */
  readonly listen: ListenAddress;
  /** Largest request body accepted, bytes. Default 65 536. */
  readonly maxBodyBytes: number;
}

/** Limits applied when fetching peers' bundles. */
export interface FetchConfig {
  /** TCP+TLS connect timeout, milliseconds. Default 5 000. */
  readonly connectTimeoutMs: number;
  /** Whole-request timeout, milliseconds. Default 30 000. */
  readonly timeoutMs: number;
  /** Largest bundle body accepted, bytes. Default 1 MiB. */
  readonly maxBodyBytes: number;
  /**
   * Kept-alive connections to bundle endpoints between polls (`fetch.keepAlive`): an idle one
   * closes after `idleTimeoutMs`; at most `maxIdle` wait at once (~40 KiB each; `'auto'`: one per
   * allowlisted peer, at least 1,024). Either 0: none kept, every poll opens a connection.
   * Defaults 10 minutes and `'auto'`.
   */
  readonly keepAlive: { readonly idleTimeoutMs: number; readonly maxIdle: number | 'auto' };
}

/** What reconciliation against SPIRE may do. */
export interface ReconcileConfig {
  /** Repair drift (bundles in SPIRE that differ from the accepted ones). Default false: report only. */
  readonly enforce: boolean;
  /**
   * How a bundle is removed from SPIRE when a peer leaves the allowlist (SPIRE BatchDeleteFederatedBundle
   * modes): `restrict` (default) refuses while registration entries federate with it, `dissociate`
   * removes those associations first, `delete` deletes the entries too.
   */
  readonly deleteMode: 'restrict' | 'dissociate' | 'delete';
}

/** The tamper-evident audit trail (docs/audit.md). */
export interface AuditConfig {
  /** JSON-lines file. Default `<stateDir>/audit.log`. */
  readonly file: string;
  /** Ed25519 PKCS#8 PEM signing key, generated (0600) when absent. Default `<stateDir>/audit-key.pem`. */
  readonly keyFile: string;
  /** `always` (default): fsync after every record. `never`: leave flushing to the OS. */
  readonly fsync: 'always' | 'never';
}

/**
 * A listener with an interval. As `probe`: the plain-HTTP health listener (`/healthz`, `/readyz`,
 * `/metrics` only) for kubelet probes and Prometheus. As `mtlsProbe`: the cross-domain mTLS probe
 * port, and how often every allowlisted peer broker with a `probe` address is probed.
 */
export interface ProbeConfig {
  /** Absent: no listener (and, for `mtlsProbe`, no probing). */
  readonly listen?: ListenAddress;
  /** Period, milliseconds (`mtlsProbe`: between probe rounds). Default 10 000. */
  readonly intervalMs: number;
}

/**
 * OpenID Connect discovery for the local trust domain's JWT-SVIDs (`oidc:`), on its own listener.
 */
export interface OidcConfig {
  readonly listen: ListenAddress;
  /**
   * The published issuer: an https URL equal, byte for byte, to the `iss` of the JWT-SVIDs
   * consumers verify — SPIRE's `jwt_issuer` (SPIRE sets no `iss` without it).
   */
  readonly issuer: string;
  /** Absolute https URL of the JWK Set. Default `<issuer>/keys`. */
  readonly jwksUri?: string;
  /** PEM certificate chain and key: the listener speaks HTTPS. Absent: plain HTTP, loopback only. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** `Cache-Control: max-age` of both documents, seconds. Default 60. */
  readonly maxAgeSeconds: number;
}

/** The broker's own configuration (`kind: BrokerConfig`), defaults filled in. */
export interface BrokerConfig {
  /** The local trust domain: never federated with itself. */
  readonly trustDomain: TrustDomain;
  /** Directory for persistent state (last accepted bundles, audit defaults). */
  readonly stateDir: string;
  readonly spire: {
    readonly servers: readonly SpireServerConfig[];
    /** Name of the server whose bundle is published. Defaults to the only server when there is one. */
    readonly source: string;
  };
  /** The allowlist lives in its own, hot-reloaded file. */
  readonly allowlist: { readonly file: string };
  /** Absent: the broker publishes no bundle endpoint (consumer only). */
  readonly endpoint?: BundleEndpointConfig;
  readonly admin: AdminConfig;
  readonly verify: VerifyApiConfig;
  readonly fetch: FetchConfig;
  readonly reconcile: ReconcileConfig;
  readonly audit: AuditConfig;
  readonly probe: ProbeConfig;
  /** The cross-domain mTLS probe (docs/verification.md). */
  readonly mtlsProbe: ProbeConfig;
  /** OIDC discovery for the local trust domain's JWT-SVIDs. Absent: not served. */
  readonly oidc?: OidcConfig;
  /** Kubernetes integration; accepted as an open mapping for now. */
  readonly kubernetes?: Readonly<Record<string, unknown>>;
  /** Bundle outputs for other consumers (files for proxyless gRPC, Envoy, PEM, JWKS); absent: none. */
  readonly outputs?: OutputsConfig;
}
