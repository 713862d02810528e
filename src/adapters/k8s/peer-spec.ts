import type { ConfigIssue } from '../../engine/config/index.js';
import {
  type Allowlist,
  type AllowlistParseOptions,
  CONFIG_API_VERSION,
  ConfigValidationError,
  type PeerConfig,
  parseAllowlist,
} from '../../engine/config/index.js';
import type { ErrorCode } from '../../errors.js';

/**
 * Pure conversion of custom resources into allowlist entries, validated by the YAML allowlist's
 * own parser (`parseAllowlist`): each FederationPeer or ClusterFederatedTrustDomain becomes the
 * entry object a file would hold, the entries are rendered as one Allowlist document and parsed.
 * So the CRD path and the file path share every rule (explicit trust domain, https-only URLs,
 * profile parameters never mixed, local trust domain refused, duplicates refused, …), and the
 * problems come back with the same codes, mapped onto the resource's own field paths.
 * @module
 */

/** A ConfigMap key reference (`namespace`/`name`/`key`). */
export interface ConfigMapKeyRef {
  readonly namespace: string;
  readonly name: string;
  readonly key: string;
}

/** `spec` of a FederationPeer (deploy/base/crd-federationpeer.yaml). Field names mirror the allowlist. */
export interface FederationPeerSpec {
  readonly trustDomain?: unknown;
  readonly bundleEndpoint?: {
    readonly urls?: unknown;
    readonly profile?: unknown;
    readonly caConfigMapRef?: ConfigMapKeyRef;
    readonly endpointSPIFFEID?: unknown;
    readonly bootstrapBundle?: unknown;
    readonly bootstrapBundleConfigMapRef?: ConfigMapKeyRef;
  };
  readonly refresh?: unknown;
  readonly keyPolicy?: unknown;
  readonly spireServers?: unknown;
  readonly allowEmptyBundle?: unknown;
  /** Relay the accepted bundle on the broker's bundle endpoint at `/bundles/<trustDomain>`. */
  readonly relay?: unknown;
  /** The `iss` of the peer's JWT-SVIDs: per-peer OIDC discovery on the broker's OIDC listener. */
  readonly oidcIssuer?: unknown;
}

/** `spec` of spire-controller-manager's ClusterFederatedTrustDomain (spire.spiffe.io/v1alpha1). */
export interface ClusterFederatedTrustDomainSpec {
  readonly trustDomain?: unknown;
  readonly bundleEndpointURL?: unknown;
  readonly bundleEndpointProfile?: { readonly type?: unknown; readonly endpointSPIFFEID?: unknown };
  /** SPIFFE bundle JSON of the trust domain; optional. */
  readonly trustDomainBundle?: unknown;
  readonly className?: unknown;
}

/** Files that referenced content was materialised into (see reference-files.ts). */
export interface ResolvedReferences {
  readonly caFile?: string;
  readonly bootstrapBundleFile?: string;
}

/** Which kind of resource an entry came from; decides how field paths are reported. */
export type PeerSourceKind = 'FederationPeer' | 'ClusterFederatedTrustDomain';

/** One resource to validate, already converted. */
export interface PeerCandidate {
  /** `FederationPeer/<name>` or `ClusterFederatedTrustDomain/<name>`. */
  readonly id: string;
  readonly kind: PeerSourceKind;
  readonly name: string;
  /** The allowlist entry (the mapping a `peers:` item of the YAML file would hold). */
  readonly entry: Readonly<Record<string, unknown>>;
}

/** Why a resource is not part of the allowlist. */
export interface PeerRejection {
  readonly candidate: PeerCandidate;
  /** The most specific code (`ERR_CONFIG_*`, `ERR_BUNDLE_*`, `ERR_K8S_REFERENCE`). */
  readonly code: ErrorCode;
  /** Human-readable, naming the resource's fields (`spec.bundleEndpoint.urls[0]: …`). */
  readonly message: string;
}

/** Result of {@link validatePeerCandidates}. */
export interface PeerValidation {
  readonly allowlist: Allowlist;
  /** Accepted candidates with their peer, in allowlist order. */
  readonly accepted: readonly { readonly candidate: PeerCandidate; readonly peer: PeerConfig }[];
  readonly rejected: readonly PeerRejection[];
}

function present<T>(v: T | undefined | null): v is T {
  return v !== undefined && v !== null;
}

/** The allowlist entry for a FederationPeer spec (references already resolved to files). */
export function entryFromFederationPeer(
  spec: FederationPeerSpec | undefined,
  refs: ResolvedReferences = {},
): Record<string, unknown> {
  const s = spec ?? {};
  const entry: Record<string, unknown> = {};
  if (present(s.trustDomain)) entry.trustDomain = s.trustDomain;
  if (present(s.bundleEndpoint)) {
    const ep = s.bundleEndpoint;
    const out: Record<string, unknown> = {};
    if (present(ep.urls)) out.urls = ep.urls;
    if (present(ep.profile)) out.profile = ep.profile;
    if (refs.caFile !== undefined) out.caFile = refs.caFile;
    if (present(ep.endpointSPIFFEID)) out.endpointSPIFFEID = ep.endpointSPIFFEID;
    if (refs.bootstrapBundleFile !== undefined) out.bootstrapBundleFile = refs.bootstrapBundleFile;
    entry.bundleEndpoint = out;
  }
  if (present(s.refresh)) entry.refresh = s.refresh;
  if (present(s.keyPolicy)) entry.keyPolicy = s.keyPolicy;
  if (present(s.spireServers)) entry.spireServers = s.spireServers;
  if (present(s.allowEmptyBundle)) entry.allowEmptyBundle = s.allowEmptyBundle;
  if (present(s.relay)) entry.relay = s.relay;
  if (present(s.oidcIssuer)) entry.oidcIssuer = s.oidcIssuer;
  return entry;
}

/**
 * The allowlist entry for a ClusterFederatedTrustDomain: `bundleEndpointURL` becomes the one URL,
 * `bundleEndpointProfile` the profile, and `trustDomainBundle` (https_spiffe only) the bootstrap
 * bundle. With https_web the broker has no use for an initial bundle and ignores it. Refresh, key
 * policy and server selection take the allowlist defaults.
 */
export function entryFromClusterFederatedTrustDomain(
  spec: ClusterFederatedTrustDomainSpec | undefined,
  refs: ResolvedReferences = {},
): Record<string, unknown> {
  const s = spec ?? {};
  const entry: Record<string, unknown> = {};
  if (present(s.trustDomain)) entry.trustDomain = s.trustDomain;
  const ep: Record<string, unknown> = {};
  if (present(s.bundleEndpointURL)) ep.urls = [s.bundleEndpointURL];
  const profile = s.bundleEndpointProfile;
  if (present(profile) && present(profile.type)) ep.profile = profile.type;
  const id = profile?.endpointSPIFFEID;
  if (present(id) && id !== '') ep.endpointSPIFFEID = id;
  if (refs.bootstrapBundleFile !== undefined) ep.bootstrapBundleFile = refs.bootstrapBundleFile;
  entry.bundleEndpoint = ep;
  return entry;
}

/** Allowlist field names → the resource's own field names, per kind. */
const FIELD_NAMES: Record<PeerSourceKind, Record<string, string>> = {
  FederationPeer: {
    '/bundleEndpoint/caFile': 'spec.bundleEndpoint.caConfigMapRef',
    '/bundleEndpoint/bootstrapBundleFile': 'spec.bundleEndpoint.bootstrapBundle',
  },
  ClusterFederatedTrustDomain: {
    '/trustDomain': 'spec.trustDomain',
    '/bundleEndpoint': 'spec',
    '/bundleEndpoint/urls': 'spec.bundleEndpointURL',
    '/bundleEndpoint/urls/0': 'spec.bundleEndpointURL',
    '/bundleEndpoint/profile': 'spec.bundleEndpointProfile.type',
    '/bundleEndpoint/endpointSPIFFEID': 'spec.bundleEndpointProfile.endpointSPIFFEID',
    '/bundleEndpoint/bootstrapBundleFile': 'spec.trustDomainBundle',
  },
};

/** Words in parser messages that name allowlist file fields, for each kind. */
const MESSAGE_WORDS: Record<PeerSourceKind, readonly [RegExp, string][]> = {
  FederationPeer: [
    [/\bbootstrapBundleFile\b/g, 'bootstrapBundle'],
    [/\bcaFile\b/g, 'caConfigMapRef'],
  ],
  ClusterFederatedTrustDomain: [
    [/\bbootstrapBundleFile\b/g, 'trustDomainBundle'],
    [/\bendpointSPIFFEID\b/g, 'bundleEndpointProfile.endpointSPIFFEID'],
  ],
};

/** `/bundleEndpoint/urls/0` → `spec.bundleEndpoint.urls[0]` (or the CFTD field). */
export function resourceFieldPath(kind: PeerSourceKind, entryPath: string): string {
  const mapped = FIELD_NAMES[kind][entryPath];
  if (mapped) return mapped;
  if (entryPath === '') return 'spec';
  let out = 'spec';
  for (const seg of entryPath.split('/').slice(1)) {
    const s = seg.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(s) ? `[${s}]` : `.${s}`;
  }
  return out;
}

function describeIssues(kind: PeerSourceKind, issues: readonly { path: string; message: string }[]): string {
  return issues
    .map((i) => {
      let msg = i.message;
      for (const [re, word] of MESSAGE_WORDS[kind]) msg = msg.replace(re, word);
      return `${resourceFieldPath(kind, i.path)}: ${msg}`;
    })
    .join('; ');
}

/** The allowlist document text validated for `entries` (JSON is YAML; the parser reads it as such). */
export function renderAllowlist(entries: readonly Readonly<Record<string, unknown>>[]): string {
  return `${JSON.stringify({ apiVersion: CONFIG_API_VERSION, kind: 'Allowlist', peers: entries }, null, 2)}\n`;
}

/**
 * Validates candidates together, exactly as one allowlist file holding their entries in this order
 * would be: earlier candidates win duplicates. Invalid candidates are rejected with their issues
 * and the rest re-validated until the remainder parses cleanly, so one bad resource never takes
 * the others down. Pure.
 *
 * @example
 * const { allowlist, rejected } = validatePeerCandidates(candidates, { localTrustDomain: 'example.org' });
 */
export function validatePeerCandidates(
  candidates: readonly PeerCandidate[],
  options: AllowlistParseOptions = {},
): PeerValidation {
  let remaining = [...candidates];
  const rejected: PeerRejection[] = [];
  for (;;) {
    const text = renderAllowlist(remaining.map((c) => c.entry));
    let allowlist: Allowlist;
    try {
      allowlist = parseAllowlist(text, options);
    } catch (err) {
      if (!(err instanceof ConfigValidationError)) throw err;
      const byIndex = new Map<number, { path: string; message: string; code: ConfigIssue['code'] }[]>();
      for (const issue of err.issues) {
        const m = /^\/peers\/(\d+)(\/.*)?$/.exec(issue.path);
        if (!m) throw new TypeError(`allowlist issue outside any entry: ${issue.path} ${issue.message}`);
        const idx = Number(m[1]);
        const list = byIndex.get(idx) ?? [];
        list.push({ path: m[2] ?? '', message: issue.message, code: issue.code });
        byIndex.set(idx, list);
      }
      // A duplicate is judged against the first holder of the trust domain; if that one is itself
      // rejected this round, the duplicate may be valid after all — decide it next round.
      const hasOther = [...byIndex.values()].some((l) =>
        l.some((i) => i.code !== 'ERR_CONFIG_DUPLICATE_PEER'),
      );
      const drop = new Set<number>();
      for (const [idx, issues] of byIndex) {
        const onlyDuplicate = issues.every((i) => i.code === 'ERR_CONFIG_DUPLICATE_PEER');
        if (hasOther && onlyDuplicate) continue;
        const candidate = remaining[idx]!;
        const first = issues[0]!.code;
        rejected.push({
          candidate,
          code: issues.every((i) => i.code === first) ? first : 'ERR_CONFIG_SCHEMA',
          message: describeIssues(candidate.kind, issues),
        });
        drop.add(idx);
      }
      remaining = remaining.filter((_, i) => !drop.has(i));
      continue;
    }
    const peers = allowlist.peers.map((p) => {
      // Source lines of the rendered document mean nothing to a resource's author.
      const { line: _line, ...rest } = p;
      return Object.freeze(rest) as PeerConfig;
    });
    return {
      allowlist: Object.freeze({ peers: Object.freeze(peers), version: allowlist.version }),
      accepted: remaining.map((candidate, i) => ({ candidate, peer: peers[i]! })),
      rejected,
    };
  }
}
