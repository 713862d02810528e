import type { SpiffeId } from '../spiffeid/spiffe-id.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';

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
}

/** One allowlist entry: a trust domain the local domain explicitly chose to trust. */
export interface PeerConfig {
  readonly trustDomain: TrustDomain;
  /** One or more https URLs, tried in order (failover). Never used to infer the trust domain. */
  readonly urls: readonly URL[];
  readonly profile: EndpointProfileConfig;
  /** Clamp of the poll interval, seconds. Defaults [1, 300]. */
  readonly refresh: { readonly minIntervalSeconds: number; readonly maxIntervalSeconds: number };
  readonly keyPolicy: KeyPolicyConfig;
  /** Names of local SPIRE servers that receive this bundle, or 'all'. */
  readonly targetServers: 'all' | readonly string[];
  /** Whether the peer may revoke everything by publishing an empty `keys` array. Default false. */
  readonly allowEmptyBundle: boolean;
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
}
