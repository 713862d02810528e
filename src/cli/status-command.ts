import { parseArgs } from 'node:util';
import { type AdminTarget, adminGetJson, type HttpGet, nodeHttpGet } from '../adapters/admin/client.js';
import type { BrokerStatus, PeerStatus } from '../adapters/admin/status.js';
import { ApiError } from '../errors.js';
import { type CliIo, EXIT_OK } from './io.js';
import { printJson, reportFailure, UsageError } from './output.js';

/** Where a running broker's admin API is, unless `--admin`, `--socket` or the environment say otherwise. */
export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8089';

/** CLI I/O plus the admin API getter (node:http over TCP or a Unix socket by default). */
export interface AdminCliIo extends CliIo {
  readonly httpGet?: HttpGet;
}

export const STATUS_USAGE = `usage:
  spiffe-broker status [--admin <url> | --socket <path>] [--json]

Shows a running broker's peers: state, bundle sequence, last successful fetch, next refresh, time
until the earliest authority expires, SPIRE servers synced, and the reason behind any state other
than ACTIVE; then drift found in the SPIRE servers.
  --admin <url>     admin API base URL (default ${DEFAULT_ADMIN_URL}, or $SPIFFE_BROKER_ADMIN)
  --socket <path>   admin API Unix socket instead
  --json            print the /v1/status document, with "ok": true
Exit status: 0 shown, 1 the admin API could not be read, 2 usage error.`;

/** Options every admin-reading command shares. */
export const ADMIN_TARGET_OPTIONS = {
  admin: { type: 'string' },
  socket: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/**
 * The admin API target of a command line: `--socket`, `--admin`, `$SPIFFE_BROKER_ADMIN`, or the
 * default loopback URL. Only plain HTTP is spoken: a broker whose admin API needs mTLS is reached
 * through its Unix socket or a loopback listener.
 * @throws UsageError
 */
export function adminTarget(
  values: { readonly admin?: string | undefined; readonly socket?: string | undefined },
  env: Readonly<Record<string, string | undefined>>,
): AdminTarget {
  if (values.admin !== undefined && values.socket !== undefined) {
    throw new UsageError('give either --admin or --socket, not both');
  }
  if (values.socket !== undefined) {
    if (values.socket === '') throw new UsageError('--socket needs a path');
    return { socketPath: values.socket };
  }
  const raw = values.admin ?? env.SPIFFE_BROKER_ADMIN ?? DEFAULT_ADMIN_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--admin ${JSON.stringify(raw)} is not a URL (e.g. ${DEFAULT_ADMIN_URL})`);
  }
  if (url.protocol !== 'http:') {
    throw new UsageError(
      `--admin must be an http:// URL; an mTLS admin listener is reached through --socket or a loopback listener`,
    );
  }
  return { url };
}

/** A duration in seconds, two units at most: `45s`, `4m 10s`, `3h 12m`, `29d 23h`. */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s / 60}m`;
  if (s < 86_400) {
    const m = Math.floor((s % 3600) / 60);
    return m ? `${Math.floor(s / 3600)}h ${m}m` : `${Math.floor(s / 3600)}h`;
  }
  const h = Math.floor((s % 86_400) / 3600);
  return h ? `${Math.floor(s / 86_400)}d ${h}h` : `${Math.floor(s / 86_400)}d`;
}

function ago(iso: string | null, now: number): string {
  if (iso === null) return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return t > now ? `in ${formatDuration((t - now) / 1000)}` : `${formatDuration((now - t) / 1000)} ago`;
}

function until(iso: string | null, now: number): string {
  if (iso === null) return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return t <= now ? 'due' : `in ${formatDuration((t - now) / 1000)}`;
}

/**
 * The NEXT REFRESH column: while a long-poll is held the next fetch is the held request's answer,
 * whenever the peer's bundle changes, so a refresh time in the past is not "due" but "held".
 */
function nextRefresh(p: PeerStatus, now: number): string {
  const due = p.nextRefresh === null || Date.parse(p.nextRefresh) <= now;
  return p.longPoll === true && due ? 'held (long-poll)' : until(p.nextRefresh, now);
}

function expiresIn(seconds: number | null): string {
  if (seconds === null) return '-';
  return seconds < 0 ? `expired ${formatDuration(-seconds)} ago` : formatDuration(seconds);
}

/** Lays out rows as left-aligned columns separated by two spaces. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function peerRow(p: PeerStatus, now: number): string[] {
  const synced = p.servers.filter((s) => s.synced).length;
  return [
    p.trustDomain,
    p.state,
    p.sequence ?? '-',
    ago(p.lastSuccess, now),
    nextRefresh(p, now),
    expiresIn(p.authorityExpiresIn),
    `${synced}/${p.servers.length}`,
    p.reason?.code ?? '-',
  ];
}

/** Renders a status document as the `spiffe-broker status` table. */
export function renderStatus(status: BrokerStatus, now: number): string {
  const out = [`trust domain ${status.trustDomain}: ${status.peers.length} peer(s)`, ''];
  if (status.peers.length > 0) {
    out.push(
      table(
        [
          'TRUST DOMAIN',
          'STATE',
          'SEQUENCE',
          'LAST SUCCESS',
          'NEXT REFRESH',
          'EXPIRES IN',
          'SERVERS',
          'REASON',
        ],
        status.peers.map((p) => peerRow(p, now)),
      ),
    );
  } else {
    out.push('no peers in the allowlist');
  }
  const failures = status.peers.flatMap((p) =>
    p.servers
      .filter((s) => s.error)
      .map((s) => `  ${p.trustDomain} on ${s.name}: ${s.error?.message} (${s.error?.code})`),
  );
  const reasons = status.peers
    .filter((p) => p.reason)
    .map((p) => `  ${p.trustDomain}: ${p.reason?.message} (${p.reason?.code})`);
  if (reasons.length > 0) out.push('', 'reasons:', ...reasons);
  if (failures.length > 0) out.push('', 'SPIRE write failures:', ...failures);
  if (status.drift.length > 0) {
    out.push(
      '',
      'drift (federated bundles no allowlist entry or SPIRE relationship accounts for):',
      ...status.drift.map((d) => `  ${d.server}: ${d.trustDomain}`),
    );
  }
  return `${out.join('\n')}\n`;
}

/**
 * What to try when the admin API could not be read: the flag that points the command at the
 * broker (`--admin`, `--socket`), or undefined for other failures.
 */
export function adminFailureHint(
  err: unknown,
  values: { readonly admin?: string | undefined; readonly socket?: string | undefined },
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  if (!(err instanceof ApiError)) return undefined;
  const where =
    values.socket !== undefined
      ? `--socket ${values.socket}`
      : values.admin !== undefined
        ? `--admin ${values.admin}`
        : env.SPIFFE_BROKER_ADMIN !== undefined
          ? `$SPIFFE_BROKER_ADMIN (${env.SPIFFE_BROKER_ADMIN})`
          : `the default ${DEFAULT_ADMIN_URL}`;
  if (err.code === 'ERR_API_CONNECT') {
    return `no broker answered at ${where}: is it running? Point at its admin API with --admin http://<admin.listen> or --socket <admin.socket> (from its broker.yaml)`;
  }
  if (err.code === 'ERR_API_RESPONSE' && /not JSON|did not answer|answered HTTP 404/.test(err.message)) {
    return `${where} is not a broker's admin API (the bundle endpoint and the verify API listen elsewhere): pass --admin http://<admin.listen> or --socket <admin.socket>`;
  }
  return undefined;
}

function checkStatus(value: unknown): BrokerStatus {
  const s = value as Partial<BrokerStatus>;
  if (typeof s?.trustDomain !== 'string' || !Array.isArray(s.peers) || !Array.isArray(s.drift)) {
    throw new ApiError('ERR_API_RESPONSE', '/v1/status did not answer a status document');
  }
  return s as BrokerStatus;
}

/** node:util parseArgs, with its errors (unknown option, missing value) turned into usage errors. */
export function parseAdminArgs(args: string[], extra: Record<string, { type: 'boolean' | 'string' }> = {}) {
  try {
    return parseArgs({ args, allowPositionals: true, options: { ...ADMIN_TARGET_OPTIONS, ...extra } });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** `spiffe-broker status`: a running broker's status, as a table or `--json`. */
export async function statusCommand(args: string[], io: AdminCliIo): Promise<number> {
  let json = args.includes('--json');
  let values: { admin?: string | undefined; socket?: string | undefined } = {};
  try {
    const parsed = parseAdminArgs(args);
    values = parsed.values;
    const { positionals } = parsed;
    json = parsed.values.json === true;
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const target = adminTarget(values, io.env);
    const status = checkStatus(
      await adminGetJson(io.httpGet ?? nodeHttpGet, target, '/v1/status', io.signal),
    );
    if (json) printJson(io, { ok: true, ...status });
    else io.stdout(renderStatus(status, io.now()));
    return EXIT_OK;
  } catch (err) {
    return reportFailure(io, json, err, STATUS_USAGE, adminFailureHint(err, values, io.env));
  }
}
