import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import type { PeerStatus as ManagerPeerStatus } from '../../engine/federation/manager.js';
import type { FileOutputSink, FileOutputStatus } from '../../engine/publish/file-output.js';
import type { ServerSyncStatus } from '../../engine/publish/spire-sync.js';
import type { PeerStateName } from '../metrics/names.js';

/**
 * Shapes of the admin API's `/v1/status` and `/v1/diff` answers: plain JSON, produced by the
 * daemon's providers and printed by `spiffe-broker status` / `spiffe-broker diff`.
 *
 * Conventions (docs/verification.md, "Admin API"):
 * - every instant is an RFC 3339 string in UTC with millisecond precision
 *   (`2026-11-23T12:00:00.000Z`, what `Date.prototype.toISOString` gives), or `null` when it has
 *   not happened / is not known;
 * - durations are numbers of seconds;
 * - bundle sequences are decimal strings (uint64 does not fit a JSON number exactly), or `null`
 *   when no bundle is held;
 * - a coded reason is `{ "code": "ERR_…", "message": "…" }` (docs/errors.md), or `null`.
 * @module
 */

/** A coded reason, as in docs/errors.md. */
export interface StatusReason {
  readonly code: string;
  readonly message: string;
}

/** How one local SPIRE server holds one peer's bundle. */
export interface ServerPeerStatus {
  /** The SPIRE server's name from the config. */
  readonly name: string;
  /** True when the server holds exactly the bundle the broker holds for the peer. */
  readonly synced: boolean;
  /** The sequence the server holds (decimal), or null when it holds none / is not known. */
  readonly sequence: string | null;
  /** Why the last write or deletion failed, or null. */
  readonly error: StatusReason | null;
}

/**
 * A peer's state as status reports it: the lifecycle states, plus, for a peer removed from the
 * allowlist, `REVOKING` (a SPIRE server still holds its bundle: deletion pending, or refused —
 * the reason says which server and why) and `REMOVED` (no bundle of it was ever held, so nothing
 * was revoked). `REVOKED` is said only once every server's deletion was confirmed by reading it
 * back.
 */
export type StatusState = PeerStateName | 'REVOKING' | 'REMOVED';

/** One allowlisted (or just revoked) peer. */
export interface PeerStatus {
  readonly trustDomain: string;
  readonly state: StatusState;
  /** The coded reason behind a state other than ACTIVE (or the last refusal), or null. */
  readonly reason: StatusReason | null;
  /** Sequence of the held bundle (decimal), or null when none is held. */
  readonly sequence: string | null;
  /** Effective refresh hint of the held bundle, seconds, or null. */
  readonly refreshHint: number | null;
  readonly lastAttempt: string | null;
  readonly lastSuccess: string | null;
  readonly nextRefresh: string | null;
  /**
   * True while the broker holds a long-poll on the peer's endpoint (change notification): the
   * next fetch is the held request's answer, not a timer, so `nextRefresh` may lie in the past.
   * Absent from brokers that predate the field.
   */
  readonly longPoll?: boolean;
  /**
   * Where the held bundle came from: `fetched` (from the peer since start), `state` (the
   * last-known-good file), `spire:<server>` (re-read from that SPIRE server because the state file
   * was lost), `none` (nothing held: SPIRE's copy is left untouched until a fetch succeeds).
   * Absent from brokers that predate the field.
   */
  readonly bundleOrigin?: string;
  /** The persisted `spiffe_sequence` high-water mark enforced for this peer (decimal), or null. */
  readonly sequenceFloor?: string | null;
  /** Seconds until the held bundle's earliest authority expires (negative once it has), or null. */
  readonly authorityExpiresIn: number | null;
  /** One entry per target SPIRE server. */
  readonly servers: readonly ServerPeerStatus[];
}

/** A federated bundle in a SPIRE server that neither the allowlist nor SPIRE's own relationships account for. */
export interface DriftEntry {
  readonly server: string;
  readonly trustDomain: string;
}

/** The allowlist in force, and the last reload that was refused since it took effect. */
export interface AllowlistStatus {
  /** Version of the allowlist in force, or null before one loaded. */
  readonly version: string | null;
  /** The refused reload (the file as it is now), or null. */
  readonly refused: { readonly code: string; readonly message: string; readonly at: string } | null;
}

/** The answer of `GET /v1/status`. */
export interface BrokerStatus {
  /** The allowlist in force and a refused reload, if any (absent from brokers that predate it). */
  readonly allowlist?: AllowlistStatus;
  /** The local trust domain. */
  readonly trustDomain: string;
  /** Sorted by trust domain. */
  readonly peers: readonly PeerStatus[];
  readonly drift: readonly DriftEntry[];
  /** The hub outputs (`outputs:` in broker.yaml); absent when none is configured. */
  readonly outputs?: OutputsStatus;
}

/** `/v1/status` `outputs`: each configured output's last write and error. */
export interface OutputsStatus {
  /** `outputs.files`: one entry per configured format ({@link FileOutputSink.status}). */
  readonly files?: readonly FileOutputStatus[];
  /** `oidc`: the discovery listener, its issuer, discovery URL, served key IDs, per-peer issuers. */
  readonly oidc?: Readonly<Record<string, unknown>>;
  /** The per-peer relay on the bundle endpoint: its base URL and the relay-enabled peers. */
  readonly relay?: Readonly<Record<string, unknown>>;
  /** `kubernetes.clusterTrustBundles` (leader only): signer, last write and error, objects. */
  readonly clusterTrustBundles?: Readonly<Record<string, unknown>>;
}

/** What a reconcile would do to one federated bundle of one server. */
export interface DiffChange {
  readonly trustDomain: string;
  /** `create`/`update`: BatchSetFederatedBundle; `delete`: BatchDeleteFederatedBundle. */
  readonly action: 'create' | 'update' | 'delete';
  /**
   * `missing`: the server lacks the peer's bundle; `changed`: it holds other content; `revoked`: the
   * peer left the allowlist; `drift`: an unaccounted bundle deleted because reconcile enforces.
   */
  readonly reason: 'missing' | 'changed' | 'revoked' | 'drift';
  /** Sequence the server holds now (decimal), or null. */
  readonly from: string | null;
  /** Sequence it would hold afterwards (decimal), or null for a deletion. */
  readonly to: string | null;
}

/** What a reconcile would change in one SPIRE server. */
export interface ServerDiff {
  readonly name: string;
  /** False when the server could not be read; `changes` is then empty and `error` says why. */
  readonly reachable: boolean;
  readonly error: StatusReason | null;
  readonly changes: readonly DiffChange[];
  /** Drift that is only reported (reconcile does not enforce), trust domain names. */
  readonly drift: readonly string[];
  /** Allowlisted trust domains the server federates with by its own relationships: left alone. */
  readonly conflicts: readonly string[];
}

/** The answer of `GET /v1/diff`: what `POST /v1/reconcile` would change, computed without changing anything. */
export interface ReconcileDiff {
  readonly trustDomain: string;
  /** When the diff was computed, RFC 3339. */
  readonly generatedAt: string;
  /** Whether reconcile deletes drift (`reconcile.enforce`). */
  readonly enforce: boolean;
  readonly servers: readonly ServerDiff[];
}

/** An instant (ms since the epoch) as the status documents write it: RFC 3339 UTC, or null. */
export function toRfc3339(ms: number | undefined | null): string | null {
  return ms === undefined || ms === null || !Number.isFinite(ms) ? null : new Date(ms).toISOString();
}

/**
 * Seconds from `now` (ms) until the earliest-expiring authority of `bundle` — X.509 or JWT,
 * whichever comes first — or null when there is no bundle or no authority carries an expiry.
 */
export function authorityExpiresIn(bundle: TrustBundle | undefined, now: number): number | null {
  if (!bundle) return null;
  const { x509, jwt } = bundle.earliestExpiry();
  const first = Math.min(x509 ?? Number.POSITIVE_INFINITY, jwt ?? Number.POSITIVE_INFINITY);
  return Number.isFinite(first) ? Math.floor((first - now) / 1000) : null;
}

const REASON_SCHEMA = {
  anyOf: [
    {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      additionalProperties: false,
    },
    { type: 'null' },
  ],
} as const;

const NULLABLE_STRING = { type: ['string', 'null'] } as const;
const NULLABLE_NUMBER = { type: ['number', 'null'] } as const;

/** JSON schema of {@link BrokerStatus}: the `/v1/status` response field allowlist. */
export const BROKER_STATUS_SCHEMA = {
  type: 'object',
  required: ['trustDomain', 'peers', 'drift'],
  additionalProperties: false,
  properties: {
    trustDomain: { type: 'string' },
    allowlist: {
      type: 'object',
      additionalProperties: false,
      required: ['version', 'refused'],
      properties: {
        version: NULLABLE_STRING,
        refused: {
          type: ['object', 'null'],
          additionalProperties: false,
          required: ['code', 'message', 'at'],
          properties: { code: { type: 'string' }, message: { type: 'string' }, at: { type: 'string' } },
        },
      },
    },
    peers: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: [
          'trustDomain',
          'state',
          'reason',
          'sequence',
          'refreshHint',
          'lastAttempt',
          'lastSuccess',
          'nextRefresh',
          'authorityExpiresIn',
          'servers',
        ],
        properties: {
          trustDomain: { type: 'string' },
          state: { type: 'string' },
          reason: REASON_SCHEMA,
          sequence: NULLABLE_STRING,
          refreshHint: NULLABLE_NUMBER,
          lastAttempt: NULLABLE_STRING,
          lastSuccess: NULLABLE_STRING,
          nextRefresh: NULLABLE_STRING,
          longPoll: { type: 'boolean' },
          bundleOrigin: { type: 'string' },
          sequenceFloor: NULLABLE_STRING,
          authorityExpiresIn: NULLABLE_NUMBER,
          servers: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['name', 'synced', 'sequence', 'error'],
              properties: {
                name: { type: 'string' },
                synced: { type: 'boolean' },
                sequence: NULLABLE_STRING,
                error: REASON_SCHEMA,
              },
            },
          },
        },
      },
    },
    drift: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['server', 'trustDomain'],
        properties: { server: { type: 'string' }, trustDomain: { type: 'string' } },
      },
    },
    outputs: {
      type: 'object',
      additionalProperties: false,
      properties: {
        oidc: { type: 'object', additionalProperties: true },
        relay: { type: 'object', additionalProperties: true },
        clusterTrustBundles: { type: 'object', additionalProperties: true },
        files: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['format', 'path', 'lastWrite', 'lastError', 'trustDomains', 'omitted'],
            properties: {
              format: { type: 'string' },
              path: { type: 'string' },
              lastWrite: NULLABLE_STRING,
              lastError: {
                type: ['object', 'null'],
                additionalProperties: false,
                required: ['code', 'message', 'at'],
                properties: { code: { type: 'string' }, message: { type: 'string' }, at: { type: 'string' } },
              },
              trustDomains: { type: 'array', items: { type: 'string' } },
              omitted: {
                type: 'array',
                items: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['trustDomain', 'reason'],
                  properties: {
                    trustDomain: { type: 'string' },
                    authority: { type: 'string' },
                    reason: { type: 'string' },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;

/** JSON schema of {@link ReconcileDiff}: the `/v1/diff` response field allowlist. */
export const RECONCILE_DIFF_SCHEMA = {
  type: 'object',
  required: ['trustDomain', 'generatedAt', 'enforce', 'servers'],
  additionalProperties: false,
  properties: {
    trustDomain: { type: 'string' },
    generatedAt: { type: 'string' },
    enforce: { type: 'boolean' },
    servers: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'reachable', 'error', 'changes', 'drift', 'conflicts'],
        properties: {
          name: { type: 'string' },
          reachable: { type: 'boolean' },
          error: REASON_SCHEMA,
          changes: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['trustDomain', 'action', 'reason', 'from', 'to'],
              properties: {
                trustDomain: { type: 'string' },
                action: { type: 'string' },
                reason: { type: 'string' },
                from: NULLABLE_STRING,
                to: NULLABLE_STRING,
              },
            },
          },
          drift: { type: 'array', items: { type: 'string' } },
          conflicts: { type: 'array', items: { type: 'string' } },
        },
      },
    },
  },
} as const;

/** What {@link brokerStatusFrom} assembles the status document from. */
export interface BrokerStatusInputs {
  /** The local trust domain. */
  readonly trustDomain: string;
  /** The federation manager's per-peer status. */
  readonly peers: readonly ManagerPeerStatus[];
  /** Every SPIRE server sync's status. */
  readonly servers: readonly ServerSyncStatus[];
  /** The bundle held for a peer (the FederatedBundleStore), for `authorityExpiresIn`. */
  readonly bundle: (trustDomain: string) => TrustBundle | undefined;
  /** The SPIRE servers a peer's bundle is written to (its allowlist entry's targets, resolved). */
  readonly targetServers: (trustDomain: string) => readonly string[];
  /** ms since the epoch. */
  readonly now: number;
}

/**
 * What status says of a peer removed from the allowlist (undefined for any other): `REVOKING`
 * while any SPIRE server still answers for its bundle (the sync's managed set keeps it until a
 * read-back confirmed the deletion; a refusal carries `ERR_SPIRE_REVOCATION_BLOCKED` with the
 * server, the number of registration entries and the fix), `REVOKED` once none does, `REMOVED`
 * when no bundle of it was ever held.
 */
export function removedPeerState(
  peer: Pick<ManagerPeerStatus, 'trustDomain' | 'state' | 'reason' | 'hadBundle'>,
  servers: readonly ServerSyncStatus[],
): { state: StatusState; reason: StatusReason; servers: string[] } | undefined {
  if (peer.state !== 'REVOKED' || peer.reason?.code !== 'ERR_PEER_REMOVED') return undefined;
  const td = peer.trustDomain;
  const holding = servers.filter(
    (s) => s.managed?.includes(td) || s.trustDomains.get(td)?.error?.code === 'ERR_SPIRE_REVOCATION_BLOCKED',
  );
  const names = holding.map((s) => s.name);
  if (holding.length > 0) {
    const blocked = holding.map((s) => s.trustDomains.get(td)?.error).find((e) => e !== undefined);
    return {
      state: 'REVOKING',
      reason: blocked
        ? { code: blocked.code, message: blocked.message }
        : {
            code: 'ERR_PEER_REVOKING',
            message: `removed from the allowlist; waiting for ${names.join(', ')} to confirm the deletion of its bundle`,
          },
      servers: names,
    };
  }
  if (peer.hadBundle === false) {
    return {
      state: 'REMOVED',
      reason: {
        code: 'ERR_PEER_REMOVED',
        message: 'removed from the allowlist; no bundle of it was held: nothing to revoke',
      },
      servers: [],
    };
  }
  return {
    state: 'REVOKED',
    reason: {
      code: 'ERR_PEER_REMOVED',
      message: 'removed from the allowlist; its bundle was deleted from every SPIRE server (read back)',
    },
    servers: [],
  };
}

/**
 * Builds the `/v1/status` document from the manager's and the SPIRE syncs' own status, so the
 * document's conventions (RFC 3339, decimal sequences, nulls) live in one place. A server that
 * could not be reached reports its last error on every peer it targets.
 */
export function brokerStatusFrom(inputs: BrokerStatusInputs): BrokerStatus {
  const byName = new Map(inputs.servers.map((s) => [s.name, s]));
  const peers = [...inputs.peers]
    .sort((a, b) => (a.trustDomain < b.trustDomain ? -1 : a.trustDomain > b.trustDomain ? 1 : 0))
    .map((p): PeerStatus => {
      const td = p.trustDomain;
      const removed = removedPeerState(p, inputs.servers);
      const reason = removed?.reason ?? p.reason;
      return {
        trustDomain: td,
        state: removed?.state ?? p.state,
        reason: reason ? { code: reason.code, message: reason.message } : null,
        sequence: p.sequence?.toString() ?? null,
        refreshHint: p.refreshHint ?? null,
        lastAttempt: toRfc3339(p.lastAttempt),
        lastSuccess: toRfc3339(p.lastSuccess),
        nextRefresh: toRfc3339(p.nextRefresh),
        longPoll: p.longPoll,
        bundleOrigin: p.bundleOrigin,
        sequenceFloor: p.sequenceFloor?.toString() ?? null,
        authorityExpiresIn: authorityExpiresIn(inputs.bundle(td), inputs.now),
        servers: (removed ? removed.servers : inputs.targetServers(td)).map((name): ServerPeerStatus => {
          const server = byName.get(name);
          const state = server?.trustDomains.get(td);
          const unreachable = server && !server.reachable ? (server.lastError ?? null) : null;
          return {
            name,
            synced: state?.synced === true && unreachable === null,
            sequence: state?.sequence ?? null,
            error: state?.error ? { code: state.error.code, message: state.error.message } : unreachable,
          };
        }),
      };
    });
  const drift = inputs.servers
    .flatMap((s) => s.drift.map((trustDomain) => ({ server: s.name, trustDomain })))
    .sort((a, b) => (a.server + a.trustDomain < b.server + b.trustDomain ? -1 : 1));
  return { trustDomain: inputs.trustDomain, peers, drift };
}

/** What {@link readinessFrom} decides on. */
export interface ReadinessInputs {
  readonly allowlistLoaded: boolean;
  /** This replica leads (always without Kubernetes leader election); a follower does not write to SPIRE. */
  readonly leader: boolean;
  readonly servers: readonly ServerSyncStatus[];
  /** Last-known-good bundles loaded at start: `[server, trust domain]` pairs not yet seen in SPIRE. */
  readonly mustPush: Iterable<readonly [server: string, trustDomain: string]>;
  readonly targetsOf: (trustDomain: string) => readonly string[];
}

/**
 * `/readyz`: ready when the allowlist is loaded and, on the leader, every last-known-good bundle
 * loaded at start is in every server it targets (written, or found there identical) and no
 * revocation is blocked (the peer's keys would still be trusted there).
 * @returns the reasons it is not ready (empty: ready), and the `mustPush` pairs now satisfied.
 */
export function readinessFrom(inputs: ReadinessInputs): { reasons: string[]; satisfied: [string, string][] } {
  const reasons: string[] = [];
  const satisfied: [string, string][] = [];
  if (!inputs.allowlistLoaded) reasons.push('allowlist not loaded yet');
  if (!inputs.leader) return { reasons, satisfied };
  const byName = new Map(inputs.servers.map((s) => [s.name, s]));
  for (const server of inputs.servers) {
    for (const [td, st] of server.trustDomains) {
      if (st.error?.code === 'ERR_SPIRE_REVOCATION_BLOCKED')
        reasons.push(`revocation of ${td} blocked on SPIRE server ${server.name}: ${st.error.message}`);
    }
  }
  for (const [server, td] of inputs.mustPush) {
    if (byName.get(server)?.trustDomains.get(td)?.synced) satisfied.push([server, td]);
    else if (inputs.targetsOf(td).includes(server))
      reasons.push(`last-known-good bundle of ${td} not yet written to SPIRE server ${server}`);
  }
  return { reasons, satisfied };
}
