import { adminGetJson, nodeHttpGet } from '../adapters/admin/client.js';
import type { DiffChange, ReconcileDiff } from '../adapters/admin/status.js';
import { ApiError } from '../errors.js';
import { EXIT_OK, EXIT_REFUSED } from './io.js';
import { printJson, reportFailure, UsageError } from './output.js';
import {
  type AdminCliIo,
  adminFailureHint,
  adminTarget,
  DEFAULT_ADMIN_URL,
  parseAdminArgs,
  table,
} from './status-command.js';

export const DIFF_USAGE = `usage:
  spiffe-broker diff [--admin <url> | --socket <path>] [--json] [--exit-code]

Shows what a reconcile of a running broker would change in each SPIRE server — bundles it would
create, update or delete — without changing anything; then drift that is only reported and
trust domains SPIRE federates with by its own relationships (left alone).
  --admin <url>     admin API base URL (default ${DEFAULT_ADMIN_URL}, or $SPIFFE_BROKER_ADMIN)
  --socket <path>   admin API Unix socket instead
  --json            print the /v1/diff document, with "ok": true
  --exit-code       exit 1 when a reconcile would change something
Exit status: 0 shown (or no change with --exit-code), 1 changes pending with --exit-code or the
admin API could not be read, 2 usage error.`;

function checkDiff(value: unknown): ReconcileDiff {
  const d = value as Partial<ReconcileDiff>;
  if (typeof d?.trustDomain !== 'string' || !Array.isArray(d.servers)) {
    throw new ApiError('ERR_API_RESPONSE', '/v1/diff did not answer a diff document');
  }
  return d as ReconcileDiff;
}

function changeRow(c: DiffChange): string[] {
  return [c.action, c.trustDomain, `${c.from ?? '-'} -> ${c.to ?? '-'}`, c.reason];
}

/** Number of changes a reconcile would make across every server. */
export function countChanges(diff: ReconcileDiff): number {
  return diff.servers.reduce((n, s) => n + s.changes.length, 0);
}

/** Renders a diff document as `spiffe-broker diff` prints it. */
export function renderDiff(diff: ReconcileDiff): string {
  const out: string[] = [];
  for (const s of diff.servers) {
    if (!s.reachable) {
      out.push(`server ${s.name}: unreachable${s.error ? `: ${s.error.message} (${s.error.code})` : ''}`, '');
      continue;
    }
    out.push(`server ${s.name}: ${s.changes.length === 0 ? 'in sync' : `${s.changes.length} change(s)`}`);
    if (s.changes.length > 0) {
      out.push(
        table(['ACTION', 'TRUST DOMAIN', 'SEQUENCE', 'WHY'], s.changes.map(changeRow))
          .split('\n')
          .map((l) => `  ${l}`)
          .join('\n'),
      );
    }
    if (s.drift.length > 0)
      out.push(`  drift, reported only (reconcile does not enforce): ${s.drift.join(', ')}`);
    if (s.conflicts.length > 0) {
      out.push(`  left alone (SPIRE's own federation relationships): ${s.conflicts.join(', ')}`);
    }
    out.push('');
  }
  const n = countChanges(diff);
  out.push(
    n === 0
      ? 'no changes: every reachable SPIRE server holds what the broker holds'
      : `${n} change(s) pending; nothing was changed`,
  );
  return `${out.join('\n')}\n`;
}

/** `spiffe-broker diff`: what a reconcile would change, changing nothing. */
export async function diffCommand(args: string[], io: AdminCliIo): Promise<number> {
  let json = args.includes('--json');
  let values: { admin?: string | undefined; socket?: string | undefined } = {};
  try {
    const parsed = parseAdminArgs(args, { 'exit-code': { type: 'boolean' } });
    values = parsed.values;
    const { positionals } = parsed;
    json = parsed.values.json === true;
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const target = adminTarget(values, io.env);
    const diff = checkDiff(await adminGetJson(io.httpGet ?? nodeHttpGet, target, '/v1/diff', io.signal));
    if (json) printJson(io, { ok: true, ...diff });
    else io.stdout(renderDiff(diff));
    const exitCode = (parsed.values as Record<string, unknown>)['exit-code'] === true;
    return exitCode && countChanges(diff) > 0 ? EXIT_REFUSED : EXIT_OK;
  } catch (err) {
    return reportFailure(io, json, err, DIFF_USAGE, adminFailureHint(err, values, io.env));
  }
}
