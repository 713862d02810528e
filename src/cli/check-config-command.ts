import { parseArgs } from 'node:util';
import type { AllowlistParseOptions } from '../engine/config/allowlist.js';
import { parseBrokerConfig } from '../engine/config/broker-config.js';
import { ConfigValidationError } from '../engine/config/config-error.js';
import { parseConfigFile } from '../engine/config/config-file.js';
import { checkReferencedFiles } from '../engine/config/referenced-files.js';
import type { ConfigIssue } from '../engine/config/types.js';
import { type CliIo, EXIT_OK, EXIT_REFUSED } from './io.js';
import { printJson, readInput, reportFailure, UsageError } from './output.js';

export const CHECK_CONFIG_USAGE = `usage: spiffe-broker check-config <file> [--broker-config <file>] [--json]

Validates an allowlist (kind: Allowlist) or a broker config (kind: BrokerConfig) without
running anything, and prints every problem as file:line:column: message. Every file the
configuration names is opened and parsed as the daemon would (CA and bootstrap bundle files,
certificates and keys, a broker config's allowlist file and the files it names); relative paths
are relative to the current directory, as they are for the daemon.
--broker-config checks an allowlist against that broker config too (its own trust domain is
refused as a peer; spireServers must name configured servers).
Exit status: 0 valid, 1 invalid, 2 usage error.`;

function decode(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigValidationError(file, [
      { line: 1, column: 1, path: '', message: 'the file is not valid UTF-8', code: 'ERR_CONFIG_YAML' },
    ]);
  }
}

function issueLine(file: string, i: ConfigIssue): string {
  return `${i.file ?? file}:${i.line}:${i.column}: ${i.path ? `${i.path}: ` : ''}${i.message} (${i.code})`;
}

/**
 * `spiffe-broker check-config <file> [--broker-config <file>] [--json]`: validates a config file
 * and reports every issue with its position. Exit 0 valid, 1 invalid, 2 usage.
 */
export async function checkConfigCommand(args: string[], io: CliIo): Promise<number> {
  let json = args.includes('--json');
  let current = '';
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { 'broker-config': { type: 'string' }, json: { type: 'boolean' } },
    });
    json = values.json === true;
    const [file, ...rest] = positionals;
    if (!file || rest.length > 0) throw new UsageError('check-config takes exactly one file');
    let context: AllowlistParseOptions = {};
    const brokerFile = values['broker-config'];
    if (brokerFile !== undefined) {
      current = brokerFile;
      const broker = parseBrokerConfig(decode(await readInput(io, brokerFile, 'broker config'), brokerFile));
      context = {
        localTrustDomain: broker.trustDomain,
        serverNames: broker.spire.servers.map((s) => s.name),
      };
    }
    current = file;
    const text = decode(await readInput(io, file, 'config file'), file);
    const parsed = parseConfigFile(text, context);
    // Open and parse every file the configuration names, as the daemon will (ERR_CONFIG_FILE).
    const fileIssues = await checkReferencedFiles(parsed, { readFile: io.readFile }, { text });
    if (fileIssues.length > 0) throw new ConfigValidationError(file, fileIssues);
    if (parsed.kind === 'Allowlist') {
      const { peers, version } = parsed.allowlist;
      if (json) {
        printJson(io, {
          ok: true,
          file,
          kind: parsed.kind,
          version,
          peers: peers.map((p) => p.trustDomain.name),
        });
      } else {
        io.stdout(
          `${file}: valid Allowlist, ${peers.length} peer${peers.length === 1 ? '' : 's'} (version sha256:${version.slice(0, 16)})\n`,
        );
      }
    } else {
      const c = parsed.config;
      if (json) {
        printJson(io, {
          ok: true,
          file,
          kind: parsed.kind,
          trustDomain: c.trustDomain.name,
          spireServers: c.spire.servers.map((s) => s.name),
          allowlistFile: c.allowlist.file,
        });
      } else {
        io.stdout(
          `${file}: valid BrokerConfig for ${c.trustDomain.name}, ${c.spire.servers.length} SPIRE server(s), allowlist ${c.allowlist.file}\n`,
        );
      }
    }
    return EXIT_OK;
  } catch (err) {
    if (err instanceof ConfigValidationError) {
      if (json) {
        printJson(io, { ok: false, code: err.code, message: err.message, file: current, issues: err.issues });
      } else {
        io.stderr(err.issues.map((i) => `${issueLine(current, i)}\n`).join(''));
        io.stderr(
          `${current}: ${err.issues.length} problem${err.issues.length === 1 ? '' : 's'} (${err.code})\n`,
        );
      }
      return EXIT_REFUSED;
    }
    return reportFailure(io, json, err, CHECK_CONFIG_USAGE);
  }
}
