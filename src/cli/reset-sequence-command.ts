import { adminPostJson, nodeHttpGet } from '../adapters/admin/client.js';
import { TrustDomain } from '../core/spiffeid/trust-domain.js';
import {
  ADMIN_TOKEN_OPTIONS,
  ADMIN_TOKEN_USAGE,
  type AdminTokenArgs,
  adminTokenFromArgs,
} from './admin-token.js';
import { EXIT_OK } from './io.js';
import { printJson, reportFailure, UsageError } from './output.js';
import {
  type AdminCliIo,
  adminFailureHint,
  adminTarget,
  DEFAULT_ADMIN_URL,
  parseAdminArgs,
} from './status-command.js';

export const RESET_SEQUENCE_USAGE = `usage: spiffe-broker reset-sequence <trust domain> [--admin <url> | --socket <path>]
       [--token-file <path> | --state-dir <dir> | --config <file>] [--json]

Resets a peer's spiffe_sequence baseline on a running broker, so that its next bundle is accepted
even with a lower sequence (the broker otherwise refuses it as a rollback,
ERR_POLICY_SEQUENCE_ROLLBACK). Use it when the peer deliberately restarted its sequence, e.g. after
rebuilding its trust domain. The reset is written to the audit trail. The broker fetches the peer
at once.

  --admin <url>   admin API base URL (default ${DEFAULT_ADMIN_URL}, or $SPIFFE_BROKER_ADMIN)
  --socket <path> admin API on a unix socket
The admin API accepts it only with the broker's admin token (<stateDir>/admin.token, mode 0600,
made by the broker at start), read from one of:
${ADMIN_TOKEN_USAGE}
Exit status: 0 reset, 1 refused (e.g. not allowlisted), 2 usage error.`;

/** `spiffe-broker reset-sequence`. */
export async function resetSequenceCommand(args: string[], io: AdminCliIo): Promise<number> {
  let json = args.includes('--json');
  let values: { admin?: string | undefined; socket?: string | undefined } = {};
  try {
    const parsed = parseAdminArgs(args, ADMIN_TOKEN_OPTIONS);
    values = parsed.values;
    const { positionals } = parsed;
    json = parsed.values.json === true;
    const [name, ...rest] = positionals;
    if (!name || rest.length > 0) throw new UsageError('reset-sequence takes exactly one trust domain');
    let td: TrustDomain;
    try {
      td = TrustDomain.parse(name);
    } catch (err) {
      throw new UsageError(`${JSON.stringify(name)}: ${(err as Error).message}`);
    }
    const target = adminTarget(values, io.env);
    const token = await adminTokenFromArgs(parsed.values as AdminTokenArgs, io);
    const r = await adminPostJson<{ ok: true; trustDomain: string; previousSequence: string | null }>(
      io.httpGet ?? nodeHttpGet,
      target,
      `/v1/peers/${encodeURIComponent(td.name)}/reset-sequence`,
      { signal: io.signal, ...(token !== undefined ? { token } : {}) },
    );
    if (json) printJson(io, r);
    else {
      io.stdout(
        `reset the sequence baseline of ${r.trustDomain} (was ${r.previousSequence ?? 'unset'}); its next bundle is accepted whatever its sequence\n`,
      );
    }
    return EXIT_OK;
  } catch (err) {
    return reportFailure(io, json, err, RESET_SEQUENCE_USAGE, adminFailureHint(err, values, io.env));
  }
}
