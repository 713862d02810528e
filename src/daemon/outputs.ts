import type { OutputsStatus } from '../adapters/admin/status.js';
import type { LocalBundle } from '../adapters/endpoint/local-bundle.js';
import type { BrokerMetrics } from '../adapters/metrics/broker-metrics.js';
import type { BrokerConfig, PeerConfig } from '../engine/config/types.js';
import type { FederatedBundleStore } from '../engine/federation/bundle-store.js';
import { FileOutputSink } from '../engine/publish/file-output.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import type { Task } from '../platform/tasks.js';
import { oidcStatus, relayStatus } from './listeners.js';

/** What the hub outputs are built from: the daemon's parts. */
export interface OutputParts {
  readonly store: FederatedBundleStore;
  readonly localBundle: LocalBundle;
  /** The allowlisted peers (the federation manager's): those without a bundle keep their files. */
  readonly peers: () => readonly PeerConfig[];
  readonly metrics: BrokerMetrics;
  readonly logger: Logger;
  readonly clock: Clock;
}

/** The built outputs: the task to run and the status for `/v1/status`. */
export interface HubOutputs {
  readonly fileOutputs?: FileOutputSink;
  /** Run in the daemon's task group, on every replica (the files are local to it). */
  readonly tasks: readonly Task[];
  /** `/v1/status` `outputs`. */
  status(): OutputsStatus;
}

/**
 * Builds the hub outputs `config.outputs` names (today `files`): a {@link FileOutputSink} over the
 * federated bundle store (plus the local bundle with `includeLocal`), its metrics and log lines,
 * and a task that writes on every store change. Undefined when no output is configured.
 *
 * @example
 * const outputs = buildHubOutputs(config, { store, localBundle, peers: () => manager.peers(), metrics, logger, clock });
 * // tasks: [...(outputs?.tasks ?? [])]; BrokerView: outputs: outputs && (() => outputs.status())
 */
export function buildHubOutputs(config: BrokerConfig, parts: OutputParts): HubOutputs | undefined {
  const files = config.outputs?.files;
  if (!files) return undefined;
  const { store, localBundle, metrics, logger } = parts;
  const sink = new FileOutputSink(
    {
      dir: files.dir,
      formats: files.formats,
      ...(files.includeLocal ? { local: localBundle } : {}),
    },
    {
      clock: parts.clock,
      observer: {
        file: (o) => metrics.observeOutputFile({ format: o.format, result: o.result }),
        pass: (o) => metrics.observeOutputPass({ output: 'files', durationSeconds: o.durationMs / 1000 }),
      },
      onReport: (r) => {
        for (const f of r.failed) {
          logger.warn('file output not written', {
            dir: files.dir,
            trustDomain: f.trustDomain,
            code: f.code,
            error: f.message,
          });
        }
        if (r.written.length > 0 || r.removed.length > 0) {
          logger.info('file outputs updated', { dir: files.dir, written: r.written, removed: r.removed });
        }
      },
    },
  );
  const retained = (): Set<string> =>
    new Set(
      parts
        .peers()
        .map((p) => p.trustDomain.name)
        .filter((td) => !store.get(td)),
    );
  return {
    fileOutputs: sink,
    tasks: [{ name: 'file outputs', run: (sig) => sink.run(store, sig, retained) }],
    status: () => ({ files: sink.status() }),
  };
}

/** Where the other outputs are, for their status: read when status is asked for. */
export interface OutputPlaces {
  readonly oidcUrl: () => string | undefined;
  readonly endpointUrl: () => string | undefined;
  readonly clusterTrustBundles: () => { status(): object } | undefined;
}

/**
 * The file outputs' tasks, and everything `/v1/status` says about the outputs: files, OIDC
 * discovery, relay, ClusterTrustBundles.
 */
export function hubOutputs(
  config: BrokerConfig,
  parts: OutputParts & OutputPlaces,
): { readonly tasks: readonly Task[]; status(): OutputsStatus } {
  const files = buildHubOutputs(config, parts);
  return {
    tasks: files?.tasks ?? [],
    status: () =>
      outputsStatus(config, {
        ...parts,
        files,
        oidcUrl: parts.oidcUrl(),
        endpointUrl: parts.endpointUrl(),
        clusterTrustBundles: parts.clusterTrustBundles(),
      }),
  };
}

/** Everything `/v1/status` says about the outputs: files, OIDC discovery, relay, ClusterTrustBundles. */
export function outputsStatus(
  config: BrokerConfig,
  parts: Pick<OutputParts, 'store' | 'localBundle' | 'peers'> & {
    readonly files: HubOutputs | undefined;
    readonly oidcUrl: string | undefined;
    readonly endpointUrl: string | undefined;
    readonly clusterTrustBundles: { status(): object } | undefined;
  },
): OutputsStatus {
  const peers = parts.peers();
  const oidc = oidcStatus(config, parts.localBundle, peers, parts.store, parts.oidcUrl);
  const relay = relayStatus(peers, parts.store, parts.endpointUrl);
  return {
    ...(parts.files?.status() ?? {}),
    ...(oidc ? { oidc: { ...oidc } } : {}),
    ...(relay.trustDomains.length > 0 ? { relay: { ...relay } } : {}),
    ...(parts.clusterTrustBundles ? { clusterTrustBundles: { ...parts.clusterTrustBundles.status() } } : {}),
  };
}
