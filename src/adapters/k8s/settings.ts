import { parseDuration } from '../../engine/config/index.js';
import { ConfigError } from '../../errors.js';
import { DEFAULT_CTB_SIGNER_NAME, signerNameProblem } from './cluster-trust-bundle-sink.js';
import { parseLabelSelector } from './label-selector.js';

/**
 * The `kubernetes:` section of the broker config (`kind: BrokerConfig`), which the config parser
 * accepts as an open mapping, read into typed settings with defaults. Pure. docs/kubernetes.md
 * documents every key; deploy/base/config/broker.yaml uses them.
 * @module
 */

/** Typed `kubernetes:` settings. */
export interface KubernetesSettings {
  /** Where API credentials come from. Default: the pod's service account. */
  readonly credentials:
    | { readonly inCluster: true }
    | { readonly kubeconfigFile: string; readonly context?: string };
  /** The allowlist from custom resources (replaces `allowlist.file` when set). */
  readonly allowlist?: {
    /** Adopt spire-controller-manager ClusterFederatedTrustDomains of this class (absent: not read). */
    readonly clusterFederatedTrustDomains?: {
      readonly className: string;
      readonly includeClassless: boolean;
    };
    /** Re-evaluation period (re-reads referenced ConfigMaps), ms. Default 60 000. */
    readonly resyncMs: number;
  };
  /** Write FederationPeer status (leader only). Default true. */
  readonly statusUpdates: boolean;
  /** Bundle distribution ConfigMaps (absent: none). */
  readonly bundleConfigMaps?: {
    readonly namespaceSelector: string;
    readonly owner: string;
    readonly resyncMs: number;
  };
  /**
   * One ClusterTrustBundle per peer trust domain (absent, or `enabled: false`: none). Needs
   * kube-apiserver ≥ 1.33 with the `ClusterTrustBundle` feature gate and the
   * `certificates.k8s.io/v1beta1` clustertrustbundles runtime config.
   */
  readonly clusterTrustBundles?: {
    /** Signer name of every object. Default `spiffe-broker.dev/federation`. */
    readonly signerName: string;
    readonly owner: string;
    readonly resyncMs: number;
  };
  /** Lease-based leader election (absent: this replica always leads — run one replica only). */
  readonly leaderElection?: {
    readonly namespace: string;
    readonly leaseName: string;
    /** Environment variable holding this replica's identity (the pod name). Default `POD_NAME`. */
    readonly identityEnv: string;
    readonly leaseDurationMs: number;
    readonly renewDeadlineMs: number;
    readonly retryPeriodMs: number;
  };
}

type Raw = Readonly<Record<string, unknown>>;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function fail(path: string, message: string): never {
  throw new ConfigError('ERR_CONFIG_SCHEMA', `kubernetes${path}: ${message}`);
}

function obj(v: unknown, path: string, keys: readonly string[]): Raw {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(path, 'must be a mapping');
  for (const k of Object.keys(v)) {
    if (!keys.includes(k)) fail(`${path}.${k}`, `unknown key (known: ${keys.join(', ')})`);
  }
  return v as Raw;
}

function str(v: unknown, path: string, fallback?: string): string {
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    fail(path, 'is required');
  }
  if (typeof v !== 'string' || v === '') fail(path, 'must be a non-empty string');
  return v;
}

function bool(v: unknown, path: string, fallback: boolean): boolean {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') fail(path, 'must be true or false');
  return v;
}

function duration(v: unknown, path: string, fallbackMs: number): number {
  if (v === undefined || v === null) return fallbackMs;
  if (typeof v !== 'string' && typeof v !== 'number') fail(path, 'must be a duration such as "30s"');
  try {
    const ms = parseDuration(v);
    if (ms <= 0) fail(path, 'must be positive');
    return ms;
  } catch (err) {
    if (err instanceof ConfigError && err.message.startsWith('kubernetes')) throw err;
    return fail(path, (err as Error).message);
  }
}

/**
 * Reads the `kubernetes:` mapping. `undefined` (no section) means no Kubernetes integration.
 *
 * @example
 * const k8s = config.kubernetes ? parseKubernetesSettings(config.kubernetes) : undefined;
 * @throws ConfigError `ERR_CONFIG_SCHEMA` naming the key.
 */
export function parseKubernetesSettings(raw: Raw): KubernetesSettings {
  const top = obj(raw, '', [
    'credentials',
    'allowlist',
    'statusUpdates',
    'bundleConfigMaps',
    'clusterTrustBundles',
    'leaderElection',
  ]);
  let credentials: KubernetesSettings['credentials'] = { inCluster: true };
  if (top.credentials !== undefined && top.credentials !== 'in-cluster') {
    const c = obj(top.credentials, '.credentials', ['kubeconfigFile', 'context']);
    const file = str(c.kubeconfigFile, '.credentials.kubeconfigFile');
    credentials =
      c.context === undefined
        ? { kubeconfigFile: file }
        : { kubeconfigFile: file, context: str(c.context, '.credentials.context') };
  }
  const out: { -readonly [K in keyof KubernetesSettings]: KubernetesSettings[K] } = {
    credentials,
    statusUpdates: bool(top.statusUpdates, '.statusUpdates', true),
  };

  if (top.allowlist !== undefined && top.allowlist !== null) {
    const a = obj(top.allowlist, '.allowlist', ['clusterFederatedTrustDomains', 'resync']);
    const resyncMs = duration(a.resync, '.allowlist.resync', 60_000);
    if (a.clusterFederatedTrustDomains !== undefined && a.clusterFederatedTrustDomains !== null) {
      const c = obj(a.clusterFederatedTrustDomains, '.allowlist.clusterFederatedTrustDomains', [
        'className',
        'includeClassless',
      ]);
      out.allowlist = {
        resyncMs,
        clusterFederatedTrustDomains: {
          className: str(c.className, '.allowlist.clusterFederatedTrustDomains.className', 'spiffe-broker'),
          includeClassless: bool(
            c.includeClassless,
            '.allowlist.clusterFederatedTrustDomains.includeClassless',
            false,
          ),
        },
      };
    } else {
      out.allowlist = { resyncMs };
    }
  }

  if (top.bundleConfigMaps !== undefined && top.bundleConfigMaps !== null) {
    const b = obj(top.bundleConfigMaps, '.bundleConfigMaps', ['namespaceSelector', 'owner', 'resync']);
    const namespaceSelector = str(b.namespaceSelector, '.bundleConfigMaps.namespaceSelector');
    try {
      if (parseLabelSelector(namespaceSelector).length === 0) throw new Error('must select something');
    } catch (err) {
      fail('.bundleConfigMaps.namespaceSelector', (err as Error).message);
    }
    out.bundleConfigMaps = {
      namespaceSelector,
      owner: str(b.owner, '.bundleConfigMaps.owner', 'spiffe-broker'),
      resyncMs: duration(b.resync, '.bundleConfigMaps.resync', 300_000),
    };
  }

  if (top.clusterTrustBundles !== undefined && top.clusterTrustBundles !== null) {
    const c = obj(top.clusterTrustBundles, '.clusterTrustBundles', [
      'enabled',
      'signerName',
      'owner',
      'resync',
    ]);
    if (bool(c.enabled, '.clusterTrustBundles.enabled', true)) {
      const signerName = str(c.signerName, '.clusterTrustBundles.signerName', DEFAULT_CTB_SIGNER_NAME);
      const problem = signerNameProblem(signerName);
      if (problem) fail('.clusterTrustBundles.signerName', problem);
      out.clusterTrustBundles = {
        signerName,
        owner: str(c.owner, '.clusterTrustBundles.owner', 'spiffe-broker'),
        resyncMs: duration(c.resync, '.clusterTrustBundles.resync', 300_000),
      };
    }
  }

  if (top.leaderElection !== undefined && top.leaderElection !== null) {
    const l = obj(top.leaderElection, '.leaderElection', [
      'namespace',
      'leaseName',
      'identityEnv',
      'leaseDuration',
      'renewDeadline',
      'retryPeriod',
    ]);
    const namespace = str(l.namespace, '.leaderElection.namespace');
    if (!DNS_LABEL.test(namespace)) fail('.leaderElection.namespace', 'must be a namespace name');
    const le = {
      namespace,
      leaseName: str(l.leaseName, '.leaderElection.leaseName', 'spiffe-broker'),
      identityEnv: str(l.identityEnv, '.leaderElection.identityEnv', 'POD_NAME'),
      leaseDurationMs: duration(l.leaseDuration, '.leaderElection.leaseDuration', 15_000),
      renewDeadlineMs: duration(l.renewDeadline, '.leaderElection.renewDeadline', 10_000),
      retryPeriodMs: duration(l.retryPeriod, '.leaderElection.retryPeriod', 2_000),
    };
    if (!(le.leaseDurationMs > le.renewDeadlineMs && le.renewDeadlineMs > le.retryPeriodMs)) {
      fail('.leaderElection', 'needs leaseDuration > renewDeadline > retryPeriod');
    }
    out.leaderElection = le;
  }
  return out;
}
