import type { AuditFs } from '../adapters/audit/fs.js';
import type { KubeApi } from '../adapters/k8s/kube-api.js';
import type { SpireServerClient } from '../adapters/spire/client.js';
import type { SpireServerConfig } from '../engine/config/types.js';
import type { FetchDeps } from '../engine/federation/fetch.js';
import type { FederationObserver } from '../engine/federation/manager.js';
import type { StateFs } from '../engine/federation/state-store.js';
import type { SpireSyncObserver } from '../engine/publish/spire-sync.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import type { SpireTls } from './spire-clients.js';

/** Side effects of the daemon; real defaults when omitted. */
export interface DaemonDeps {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Reads a file named by the configuration. */
  readonly readFile?: (path: string) => Promise<Uint8Array>;
  readonly stateFs?: StateFs;
  /** Transport for peer fetches (tests inject a connector that trusts a test CA). */
  readonly fetchDeps?: FetchDeps;
  /** Builds the client of one configured SPIRE server (tests may point it elsewhere). */
  readonly spireClient?: (server: SpireServerConfig, tls: SpireTls) => SpireServerClient;
  /** Uniform [0, 1) for jitter. */
  readonly random?: () => number;
  /** Extra observers (metrics, audit, tests). */
  readonly federationObserver?: Partial<FederationObserver>;
  readonly syncObserver?: Partial<SpireSyncObserver>;
  /** Environment (the leader-election identity variable). Default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Kubernetes API (tests); default from `kubernetes.credentials`. */
  readonly kubeApi?: KubeApi;
  /** File operations of the audit writer; default node:fs. */
  readonly auditFs?: AuditFs;
}

/** Readiness and the reasons it is not ready. */
export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}
