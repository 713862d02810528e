/**
 * Pure computation of a FederationPeer's `status`: the condition list (Kubernetes
 * `metav1.Condition` conventions — one entry per type, `lastTransitionTime` changes only when the
 * status flips), the summary `state` shown by `kubectl get`, the accepted sequence, the last
 * success and the per-server sync. Two writers share it, each owning its own condition types:
 * the CRD source writes `Accepted`; the daemon's status snapshot writes the rest.
 * @module
 */

/** The summary column of `kubectl get federationpeers`. */
export type PeerState = 'Pending' | 'Ready' | 'Stale' | 'Failing' | 'Revoked' | 'Invalid' | 'Conflict';

/** Condition types: `Accepted` (the spec is valid) and the runtime ones. */
export type PeerConditionType = 'Accepted' | 'Ready' | 'Stale' | 'Failing' | 'Revoked';

/** A `metav1.Condition`. */
export interface PeerCondition {
  readonly type: PeerConditionType;
  readonly status: 'True' | 'False' | 'Unknown';
  /** CamelCase, or one of the broker's `ERR_` codes (docs/errors.md). */
  readonly reason: string;
  readonly message: string;
  /** RFC 3339, seconds precision. */
  readonly lastTransitionTime: string;
  readonly observedGeneration?: number;
}

/** Per local SPIRE server: does it hold the accepted bundle. */
export interface PeerServerStatus {
  readonly name: string;
  readonly synced: boolean;
  /** Decimal uint64. */
  readonly sequence?: string;
  readonly errorCode?: string;
  readonly error?: string;
}

/** `status` of a FederationPeer. */
export interface FederationPeerStatus {
  readonly observedGeneration?: number;
  readonly state?: PeerState;
  readonly sequence?: string;
  readonly lastSuccess?: string;
  readonly servers?: readonly PeerServerStatus[];
  readonly conditions?: readonly PeerCondition[];
}

/** What the daemon knows about one peer, handed to the status writer. */
export interface PeerStatusSnapshot {
  readonly trustDomain: string;
  /** `Pending` until the first bundle; `Conflict` when SPIRE holds a relationship the broker does not manage. */
  readonly state: 'Pending' | 'Ready' | 'Stale' | 'Failing' | 'Revoked' | 'Conflict';
  /** Why the peer is in this state, for anything but Ready/Pending: a broker error code and message. */
  readonly reason?: { readonly code: string; readonly message: string };
  /** `spiffe_sequence` of the accepted bundle. */
  readonly sequence?: bigint | number | string;
  /** When a bundle was last fetched and accepted, ms since the epoch. */
  readonly lastSuccess?: number;
  readonly servers: readonly {
    readonly name: string;
    readonly synced: boolean;
    readonly sequence?: bigint | number | string;
    readonly error?: { readonly code: string; readonly message: string };
  }[];
}

/** All peers, as the daemon reports them. */
export interface StatusSnapshot {
  readonly peers: readonly PeerStatusSnapshot[];
}

/** Kubernetes caps condition messages at 32 KiB; keep them readable well below that. */
const MAX_MESSAGE = 4096;
/** Condition reasons must match metav1's pattern; anything else is reduced to a safe word. */
const REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;

/** RFC 3339 at seconds precision, as `metav1.Time` serialises. */
export function kubeTime(ms: number): string {
  return `${new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19)}Z`;
}

function clip(s: string): string {
  return s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE - 1)}…` : s;
}

function safeReason(r: string): string {
  return REASON.test(r) && r.length <= 1024 ? r : 'Unknown';
}

/**
 * Sets one condition, keeping `lastTransitionTime` when the status did not change; other types are
 * kept as they are. Returns a new list sorted by type (a stable order keeps status writes minimal).
 */
export function setCondition(
  conditions: readonly PeerCondition[] | undefined,
  next: Omit<PeerCondition, 'lastTransitionTime'>,
  nowMs: number,
): PeerCondition[] {
  const old = (conditions ?? []).find((c) => c.type === next.type);
  const cond: PeerCondition = {
    ...next,
    reason: safeReason(next.reason),
    message: clip(next.message),
    lastTransitionTime: old && old.status === next.status ? old.lastTransitionTime : kubeTime(nowMs),
  };
  return [...(conditions ?? []).filter((c) => c.type !== next.type), cond].sort((a, b) =>
    a.type < b.type ? -1 : a.type > b.type ? 1 : 0,
  );
}

/** The CRD source's verdict on a resource. */
export type AcceptanceVerdict =
  | { readonly accepted: true }
  | { readonly accepted: false; readonly code: string; readonly message: string };

/**
 * Status after the CRD source judged the spec at `generation`: `Accepted` True/False; a rejected
 * resource is `Invalid` and not Ready; a newly accepted one is `Pending` until the daemon reports.
 */
export function withAcceptance(
  current: FederationPeerStatus | undefined,
  generation: number | undefined,
  verdict: AcceptanceVerdict,
  nowMs: number,
): FederationPeerStatus {
  const cur = current ?? {};
  const gen = generation === undefined ? {} : { observedGeneration: generation };
  if (verdict.accepted) {
    const conditions = setCondition(
      cur.conditions,
      {
        type: 'Accepted',
        status: 'True',
        reason: 'Valid',
        message: 'the spec is a valid allowlist entry',
        ...gen,
      },
      nowMs,
    );
    const state: PeerState = cur.state === undefined || cur.state === 'Invalid' ? 'Pending' : cur.state;
    return { ...cur, ...gen, state, conditions };
  }
  let conditions = setCondition(
    cur.conditions,
    { type: 'Accepted', status: 'False', reason: verdict.code, message: verdict.message, ...gen },
    nowMs,
  );
  conditions = setCondition(
    conditions,
    {
      type: 'Ready',
      status: 'False',
      reason: 'Invalid',
      message: 'the spec was rejected: see the Accepted condition',
    },
    nowMs,
  );
  return { ...cur, ...gen, state: 'Invalid', conditions };
}

const RUNTIME_TYPES = ['Ready', 'Stale', 'Failing', 'Revoked'] as const;

/** Which runtime condition each state makes True (Conflict counts as Failing). */
function trueTypeOf(state: PeerStatusSnapshot['state']): (typeof RUNTIME_TYPES)[number] | undefined {
  switch (state) {
    case 'Ready':
      return 'Ready';
    case 'Stale':
      return 'Stale';
    case 'Failing':
    case 'Conflict':
      return 'Failing';
    case 'Revoked':
      return 'Revoked';
    case 'Pending':
      return undefined;
  }
}

const DEFAULT_MESSAGES: Record<PeerStatusSnapshot['state'], string> = {
  Ready: "the peer's bundle is current and written to every selected SPIRE server",
  Pending: 'no bundle accepted yet',
  Stale: "the peer's bundle could not be refreshed; the last accepted one is still used",
  Failing: "the peer's bundle endpoint or a SPIRE server is failing",
  Conflict: 'a SPIRE federation relationship for this trust domain is managed by someone else; left alone',
  Revoked: 'the peer published an empty bundle: every SVID of its trust domain is distrusted',
};

/** Status after applying the daemon's runtime snapshot of the peer (keeps `Accepted`). */
export function withRuntime(
  current: FederationPeerStatus | undefined,
  snap: PeerStatusSnapshot,
  nowMs: number,
): FederationPeerStatus {
  const cur = current ?? {};
  const active = trueTypeOf(snap.state);
  let conditions: PeerCondition[] = [...(cur.conditions ?? [])];
  for (const type of RUNTIME_TYPES) {
    const isTrue = type === active;
    conditions = setCondition(
      conditions,
      isTrue
        ? {
            type,
            status: 'True',
            reason: snap.reason?.code ?? snap.state,
            message: snap.reason?.message ?? DEFAULT_MESSAGES[snap.state],
          }
        : { type, status: 'False', reason: snap.state, message: '' },
      nowMs,
    );
  }
  const out: {
    -readonly [K in keyof FederationPeerStatus]: FederationPeerStatus[K];
  } = { ...cur, state: snap.state, conditions };
  if (snap.sequence !== undefined) out.sequence = String(snap.sequence);
  else delete out.sequence;
  if (snap.lastSuccess !== undefined) out.lastSuccess = kubeTime(snap.lastSuccess);
  out.servers = [...snap.servers]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((s) => ({
      name: s.name,
      synced: s.synced,
      ...(s.sequence !== undefined ? { sequence: String(s.sequence) } : {}),
      ...(s.error ? { errorCode: s.error.code, error: clip(s.error.message) } : {}),
    }));
  return out;
}

/** Structural equality of two JSON values (key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  const ka = Object.keys(a as object).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b as object).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return (
    ka.length === kb.length &&
    ka.every((k) => jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}
