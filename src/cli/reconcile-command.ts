import { adminGetJson, adminPostJson, nodeHttpGet } from '../adapters/admin/client.js';
import type { BrokerStatus } from '../adapters/admin/status.js';
import {
  ADMIN_TOKEN_OPTIONS,
  ADMIN_TOKEN_USAGE,
  type AdminTokenArgs,
  adminTokenFromArgs,
} from './admin-token.js';
import { EXIT_OK, EXIT_REFUSED } from './io.js';
import { printJson, reportFailure, UsageError } from './output.js';
import {
  type AdminCliIo,
  adminFailureHint,
  adminTarget,
  DEFAULT_ADMIN_URL,
  parseAdminArgs,
} from './status-command.js';

export const RECONCILE_USAGE = `usage: spiffe-broker reconcile [--admin <url> | --socket <path>]
       [--token-file <path> | --state-dir <dir> | --config <file>] [--json]

Asks a running broker to reconcile every SPIRE server now (POST /v1/reconcile) — e.g. after
removing the federatesWith entries that blocked a revocation — waits until each server converged
or failed once, then prints what is still wrong per server and trust domain.

  --admin <url>   admin API base URL (default ${DEFAULT_ADMIN_URL}, or $SPIFFE_BROKER_ADMIN)
  --socket <path> admin API on a unix socket
The admin API accepts it only with the broker's admin token, read from one of:
${ADMIN_TOKEN_USAGE}
Exit status: 0 every server converged, 1 something is still unsynced or blocked (printed), 2 usage error.`;

/** One problem left after a reconcile. */
interface Problem {
  readonly trustDomain: string;
  readonly server: string;
  readonly state: string;
  readonly code: string;
  readonly message: string;
}

/** `spiffe-broker reconcile`. */
export async function reconcileCommand(args: string[], io: AdminCliIo): Promise<number> {
  let json = args.includes('--json');
  let values: { admin?: string | undefined; socket?: string | undefined } = {};
  try {
    const parsed = parseAdminArgs(args, ADMIN_TOKEN_OPTIONS);
    values = parsed.values;
    json = parsed.values.json === true;
    if (parsed.positionals.length > 0) throw new UsageError('reconcile takes no arguments');
    const target = adminTarget(values, io.env);
    const token = await adminTokenFromArgs(parsed.values as AdminTokenArgs, io);
    const get = io.httpGet ?? nodeHttpGet;
    await adminPostJson<{ ok: true }>(get, target, '/v1/reconcile', {
      signal: io.signal,
      ...(token !== undefined ? { token } : {}),
    });
    const status = await adminGetJson<BrokerStatus>(get, target, '/v1/status', io.signal);
    const problems: Problem[] = [];
    for (const p of status.peers) {
      for (const s of p.servers) {
        if (s.error)
          problems.push({
            trustDomain: p.trustDomain,
            server: s.name,
            state: p.state,
            code: s.error.code,
            message: s.error.message,
          });
      }
      if (p.state === 'REVOKING' && p.reason && !problems.some((x) => x.trustDomain === p.trustDomain))
        problems.push({ trustDomain: p.trustDomain, server: '-', state: p.state, ...p.reason });
    }
    if (json) printJson(io, { ok: problems.length === 0, reconciled: true, problems });
    else if (problems.length === 0)
      io.stdout('reconciled: every SPIRE server holds what the allowlist asks for\n');
    else {
      io.stdout(`reconciled, but ${problems.length} problem${problems.length === 1 ? '' : 's'} remain:\n`);
      for (const x of problems)
        io.stdout(`  ${x.trustDomain} on ${x.server} (${x.state}): ${x.code}: ${x.message}\n`);
    }
    return problems.length === 0 ? EXIT_OK : EXIT_REFUSED;
  } catch (err) {
    return reportFailure(io, json, err, RECONCILE_USAGE, adminFailureHint(err, values, io.env));
  }
}
