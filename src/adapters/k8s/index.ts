/**
 * Kubernetes integration — the only importer of `@kubernetes/client-node`.
 *
 * - {@link CrdAllowlistSource}: the allowlist from FederationPeer custom resources (and, opt-in,
 *   spire-controller-manager's ClusterFederatedTrustDomains), validated by the YAML allowlist's own
 *   rules; invalid objects get an `Accepted=False` condition and are left out.
 * - {@link FederationPeerStatusWriter}: FederationPeer status from the daemon's snapshot.
 * - {@link ConfigMapSink}: each peer's bundle as a ConfigMap in every namespace matching a label
 *   selector, touching only the broker's own ConfigMaps.
 * - {@link ClusterTrustBundleSink}: each peer's X.509 roots as a ClusterTrustBundle (one per trust
 *   domain, one signer name, a trust-domain label), for projected volumes.
 * - {@link LeaderElector}: a coordination.k8s.io Lease; only the leader writes.
 * - {@link Reflector}: the list+watch cache under all of them (resume, relist on 410 Gone).
 * - {@link parseKubernetesSettings}: the `kubernetes:` section of the broker config, typed.
 *
 * Nothing connects at import; every long-running part has `run(signal)`; clock and logger are
 * injected. docs/kubernetes.md describes the resources, RBAC and deployment.
 * @module
 */
export type {
  ClusterTrustBundleSinkObserver,
  ClusterTrustBundleSinkOptions,
  ClusterTrustBundleStatus,
} from './cluster-trust-bundle-sink.js';
export {
  ClusterTrustBundleSink,
  CTB_COMPONENT,
  clusterTrustBundleName,
  clusterTrustBundlePem,
  DEFAULT_CTB_SIGNER_NAME,
  signerNameProblem,
} from './cluster-trust-bundle-sink.js';
export type { BundleFeed, ConfigMapSinkObserver, ConfigMapSinkOptions } from './configmap-sink.js';
export {
  BUNDLE_COMPONENT_LABEL,
  bundleConfigMapData,
  bundleConfigMapName,
  ConfigMapSink,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  OWNER_ANNOTATION,
  TRUST_DOMAIN_ANNOTATION,
} from './configmap-sink.js';
export type {
  ClusterFederatedTrustDomainSelection,
  CrdAllowlistSourceOptions,
  RejectedPeer,
} from './crd-source.js';
export { CrdAllowlistSource } from './crd-source.js';
export type { K8sLogger } from './deps.js';
export { nullLogger, Trigger } from './deps.js';
export type {
  ClientNodeKubeApiOptions,
  CollectionOptions,
  KubeApi,
  KubeCredentials,
  KubeObject,
  ObjectMeta,
  ResourceType,
  WatchEnd,
  WatchEvent,
} from './kube-api.js';
export {
  CLUSTER_FEDERATED_TRUST_DOMAINS,
  CLUSTER_TRUST_BUNDLES,
  ClientNodeKubeApi,
  CONFIG_MAPS,
  FEDERATION_PEERS,
  isConflict,
  isNotFound,
  KubeApiError,
  LEASES,
  NAMESPACES,
  resourcePath,
} from './kube-api.js';
export type { LabelRequirement } from './label-selector.js';
export { matchesLabels, parseLabelSelector } from './label-selector.js';
export type {
  LeaderElectorObserver,
  LeaderElectorOptions,
  LeaseAttempt,
  LeaseRecord,
} from './leader-election.js';
export { LeaderElector } from './leader-election.js';
export type {
  ClusterFederatedTrustDomainSpec,
  ConfigMapKeyRef,
  FederationPeerSpec,
  PeerCandidate,
  PeerRejection,
  PeerSourceKind,
  PeerValidation,
  ResolvedReferences,
} from './peer-spec.js';
export {
  entryFromClusterFederatedTrustDomain,
  entryFromFederationPeer,
  renderAllowlist,
  resourceFieldPath,
  validatePeerCandidates,
} from './peer-spec.js';
export type {
  AcceptanceVerdict,
  FederationPeerStatus,
  PeerCondition,
  PeerConditionType,
  PeerServerStatus,
  PeerState,
  PeerStatusSnapshot,
  StatusSnapshot,
} from './peer-status.js';
export { jsonEqual, kubeTime, setCondition, withAcceptance, withRuntime } from './peer-status.js';
export type { ReferenceFileStore } from './reference-files.js';
export { DirectoryReferenceStore, MemoryReferenceStore } from './reference-files.js';
export type { ReflectorEvent, ReflectorObserver, ReflectorOptions } from './reflector.js';
export { Reflector } from './reflector.js';
export type { KubernetesSettings } from './settings.js';
export { parseKubernetesSettings } from './settings.js';
export type {
  FederationPeerStatusWriterOptions,
  StatusWriteResult,
} from './status-writer.js';
export { FederationPeerStatusWriter } from './status-writer.js';
export { TRUST_DOMAIN_LABEL, trustDomainLabelValue } from './trust-domain-label.js';
