/**
 * Configuration: the allowlist of peer trust domains and the broker's own config, from YAML text
 * to validated, typed values. The parsers are pure (text in, typed config or a
 * {@link ConfigValidationError} listing every issue with line and column out). The
 * {@link AllowlistWatcher} is the one part that reads files, through injected fs and clock, to
 * hot-reload the allowlist, and {@link checkReferencedFiles} opens the files a configuration
 * names (through an injected fs) so `check-config` and start-up catch a missing or unusable file.
 * Reference: docs/configuration.md; editor schemas: deploy/schema/.
 * @module
 */

export type { AllowlistParseOptions } from './allowlist.js';
export {
  CURVES,
  DEFAULT_REFRESH_MAX_SECONDS,
  DEFAULT_REFRESH_MIN_SECONDS,
  endpointUrlProblem,
  KEY_TYPES,
  parseAllowlist,
} from './allowlist.js';
export type { AllowlistDiff } from './allowlist-diff.js';
export { allowlistDiffEmpty, diffAllowlists, peerSettingsKey } from './allowlist-diff.js';
export type {
  AllowlistFileStat,
  AllowlistUpdate,
  AllowlistWatcherDeps,
  AllowlistWatcherFs,
  AllowlistWatcherOptions,
} from './allowlist-watcher.js';
export { AllowlistWatcher, DEFAULT_ALLOWLIST_POLL_MS, FULL_READ_EVERY } from './allowlist-watcher.js';
export {
  BROKER_DEFAULTS,
  isLoopbackHost,
  parseBrokerConfig,
  parseListenAddress,
  spireAddressProblem,
} from './broker-config.js';
export { ConfigValidationError, formatIssue } from './config-error.js';
export type { ParsedConfigFile } from './config-file.js';
export { CONFIG_KINDS, detectConfigKind, parseConfigFile } from './config-file.js';
export { parseByteSize, parseDuration } from './duration.js';
export type { ConfigKind } from './header.js';
export { CONFIG_API_VERSION } from './header.js';
export type { ReferencedFileCheckOptions, ReferencedFileFs } from './referenced-files.js';
export { assertReferencedFiles, checkReferencedFiles } from './referenced-files.js';
export type {
  AdminConfig,
  Allowlist,
  AuditConfig,
  BrokerConfig,
  BundleEndpointConfig,
  ConfigIssue,
  EndpointProfileConfig,
  FetchConfig,
  KeyPolicyConfig,
  ListenAddress,
  PeerConfig,
  ProbeConfig,
  ReconcileConfig,
  SpireServerConfig,
  VerifyApiConfig,
} from './types.js';
