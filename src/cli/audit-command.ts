import type { KeyObject } from 'node:crypto';
import { parseArgs } from 'node:util';
import { parseAuditPublicKey } from '../adapters/audit/key.js';
import { verifyAuditLog } from '../adapters/audit/verify.js';
import { BrokerError } from '../errors.js';
import { type CliIo, EXIT_OK, EXIT_REFUSED } from './io.js';
import { printJson, readInput, reportFailure, UsageError } from './output.js';

export const AUDIT_USAGE = `usage: spiffe-broker audit verify <file> [--public-key <pem>] [--json]

Verifies a tamper-evident audit log: every record's Ed25519 signature, its seq and its hash link
to the record before. Names the first line that does not verify.
--public-key  the audit key you trust (PEM public key, or the private key file). Without it the
              key the log declares in its first record is used, which only proves the log is
              internally consistent, not who wrote it.
Exit status: 0 intact, 1 broken, 2 usage error.`;

const DECLARED_KEY_WARNING =
  'warning: no --public-key given: checked with the key the log declares itself, which proves only internal consistency (anyone can write a consistent log with their own key)';

/**
 * `spiffe-broker audit verify <file> [--public-key <pem>] [--json]`. Exit 0 intact, 1 broken,
 * 2 usage.
 */
export async function auditCommand(args: string[], io: CliIo): Promise<number> {
  let json = args.includes('--json');
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { 'public-key': { type: 'string' }, json: { type: 'boolean' } },
    });
    json = values.json === true;
    const [sub, file, ...rest] = positionals;
    if (sub !== 'verify') throw new UsageError(`unknown audit subcommand ${JSON.stringify(sub ?? '')}`);
    if (!file || rest.length > 0) throw new UsageError('audit verify takes exactly one file');
    let key: KeyObject | undefined;
    const keyFile = values['public-key'];
    if (keyFile !== undefined) {
      const pem = await readInput(io, keyFile, 'public key');
      try {
        key = parseAuditPublicKey(pem, `--public-key ${keyFile}`);
      } catch (err) {
        throw new UsageError(err instanceof BrokerError ? err.message : String(err));
      }
    }
    const log = await readInput(io, file, 'audit log');
    const v = verifyAuditLog(log, key);
    const warning = key === undefined ? DECLARED_KEY_WARNING : undefined;
    if (v.ok) {
      const last = v.records.at(-1)?.seq ?? 0;
      if (json) {
        printJson(io, {
          ok: true,
          records: v.records.length,
          lastSeq: last,
          keyId: v.keyId,
          keySource: v.keySource,
          ...(warning ? { warning } : {}),
        });
      } else {
        if (warning) io.stderr(`${warning}\n`);
        io.stdout(
          `${file}: intact, ${v.records.length} record${v.records.length === 1 ? '' : 's'} (seq 1..${last})${v.keyId ? `, key sha256:${v.keyId.slice(0, 16)}` : ''}\n`,
        );
      }
      return EXIT_OK;
    }
    if (json) {
      printJson(io, {
        ok: false,
        code: v.code,
        message: v.message,
        brokenAt: v.brokenAt,
        verifiedRecords: v.verifiedRecords,
        ...(warning ? { warning } : {}),
      });
    } else {
      if (warning) io.stderr(`${warning}\n`);
      io.stderr(
        `${file}:${v.brokenAt}: BROKEN: ${v.message} (${v.code}); ${v.verifiedRecords} record(s) before it verify\n`,
      );
    }
    return EXIT_REFUSED;
  } catch (err) {
    return reportFailure(io, json, err, AUDIT_USAGE);
  }
}
