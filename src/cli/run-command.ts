import { parseArgs } from 'node:util';
import { BrokerDaemon } from '../daemon/daemon.js';
import { parseBrokerConfig } from '../engine/config/broker-config.js';
import { assertReferencedFiles } from '../engine/config/referenced-files.js';
import { jsonLogger, type LogLevel } from '../platform/logger.js';
import { type CliIo, EXIT_OK } from './io.js';
import { readInput, reportFailure, UsageError } from './output.js';

export const RUN_USAGE = `usage: spiffe-broker run --config <broker.yaml> [--log-level debug|info|warn|error]

Runs the broker daemon until SIGINT/SIGTERM: publishes the local bundle, federates with the
allowlisted peers, writes their bundles into every configured SPIRE server. Logs are JSON lines on
stderr. See docs/configuration.md.`;

/** `spiffe-broker run`. */
export async function runCommand(args: string[], io: CliIo): Promise<number> {
  try {
    const { values } = parseArgs({
      args,
      options: { config: { type: 'string', short: 'c' }, 'log-level': { type: 'string' } },
    });
    if (!values.config) throw new UsageError('--config is required');
    const level = (values['log-level'] ?? io.env.SPIFFE_BROKER_LOG_LEVEL ?? 'info') as LogLevel;
    if (!['debug', 'info', 'warn', 'error'].includes(level))
      throw new UsageError(`unknown log level ${level}`);
    const text = Buffer.from(await readInput(io, values.config, 'config file')).toString('utf8');
    const config = parseBrokerConfig(text);
    // Every file the config (and its allowlist) names, opened and parsed before anything starts:
    // a missing or unusable file is ERR_CONFIG_FILE at its key's line, exit 1, as check-config says.
    await assertReferencedFiles({ kind: 'BrokerConfig', config }, { readFile: io.readFile }, { text });
    const logger = jsonLogger(io.stderr, {
      level,
      now: io.now,
      base: { trustDomain: config.trustDomain.name },
    });
    const daemon = await BrokerDaemon.create(config, { logger, readFile: io.readFile });
    logger.info('spiffe-broker starting', { config: values.config });
    await daemon.run(io.signal);
    logger.info('spiffe-broker stopped');
    return EXIT_OK;
  } catch (err) {
    return reportFailure(io, false, err, RUN_USAGE);
  }
}
