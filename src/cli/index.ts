/**
 * The `spiffe-broker` command line: argv in, exit code out, all I/O through an injected
 * {@link CliIo} so every command is testable in-process.
 * @module
 */
import { AUDIT_USAGE, auditCommand } from './audit-command.js';
import { BUNDLE_USAGE, bundleCommand } from './bundle-command.js';
import { CHECK_CONFIG_USAGE, checkConfigCommand } from './check-config-command.js';
import { DIFF_USAGE, diffCommand } from './diff-command.js';
import { EXPORT_USAGE, exportCommand } from './export-command.js';
import { FETCH_USAGE, fetchCommand } from './fetch-command.js';
import { type CliIo, EXIT_OK, EXIT_USAGE } from './io.js';
import { LAB_USAGE, labCommand } from './lab-command.js';
import { terminalSafeIo } from './output.js';
import { RECONCILE_USAGE, reconcileCommand } from './reconcile-command.js';
import { RESET_SEQUENCE_USAGE, resetSequenceCommand } from './reset-sequence-command.js';
import { RUN_USAGE, runCommand } from './run-command.js';
import { STATUS_USAGE, statusCommand } from './status-command.js';
import { VERIFY_USAGE, verifyCommand } from './verify-command.js';

export type { CliIo } from './io.js';
export { EXIT_OK, EXIT_REFUSED, EXIT_USAGE, processIo } from './io.js';

type Command = { summary: string; usage: string; run: (args: string[], io: CliIo) => Promise<number> };

const COMMANDS: Record<string, Command> = {
  run: { summary: 'run the broker daemon', usage: RUN_USAGE, run: runCommand },
  lab: {
    summary: 'run a three-trust-domain federation lab on loopback and narrate a demo',
    usage: LAB_USAGE,
    run: labCommand,
  },
  status: {
    summary: "print a running broker's peer and SPIRE sync status",
    usage: STATUS_USAGE,
    run: statusCommand,
  },
  diff: {
    summary: 'print what a reconcile would change in SPIRE, changing nothing',
    usage: DIFF_USAGE,
    run: diffCommand,
  },
  reconcile: {
    summary: 'reconcile every SPIRE server now and print what is still unsynced or blocked',
    usage: RECONCILE_USAGE,
    run: reconcileCommand,
  },
  'reset-sequence': {
    summary: "reset a peer's spiffe_sequence baseline on a running broker (audited)",
    usage: RESET_SEQUENCE_USAGE,
    run: resetSequenceCommand,
  },
  'check-config': {
    summary: 'validate a broker config or allowlist file without running',
    usage: CHECK_CONFIG_USAGE,
    run: checkConfigCommand,
  },
  fetch: {
    summary: "fetch and validate one peer's bundle, changing nothing",
    usage: FETCH_USAGE,
    run: (a, io) => fetchCommand(a, io),
  },
  export: {
    summary: 'print the accepted bundles in a consumer format (gRPC/Envoy bundle map, PEM, JWKS, ...)',
    usage: EXPORT_USAGE,
    run: exportCommand,
  },
  bundle: { summary: 'parse and inspect a SPIFFE bundle file', usage: BUNDLE_USAGE, run: bundleCommand },
  verify: {
    summary: 'verify an X509-SVID or JWT-SVID against a bundle',
    usage: VERIFY_USAGE,
    run: verifyCommand,
  },
  audit: { summary: 'verify a tamper-evident audit log', usage: AUDIT_USAGE, run: auditCommand },
};

/** Top-level usage text. */
export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'usage: spiffe-broker <command> [options]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    "Run `spiffe-broker <command> --help` for a command's options.",
    'Exit status: 0 ok/accepted, 1 refused/failed, 2 usage error.',
  ].join('\n');
}

/**
 * Runs the CLI with `argv` (without the node and script paths) and returns the exit code. Every
 * command writes through {@link terminalSafeIo}: control characters in its output, which may come
 * from a peer (a `kid`, a refusal message), are escaped rather than sent to the terminal.
 */
export async function runCli(argv: string[], rawIo: CliIo): Promise<number> {
  const io = terminalSafeIo(rawIo);
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(`${usage()}\n`);
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.stderr(`error: unknown command ${JSON.stringify(name)}\n\n${usage()}\n`);
    return EXIT_USAGE;
  }
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout(`${command.usage}\n`);
    return EXIT_OK;
  }
  return command.run(args, io);
}
