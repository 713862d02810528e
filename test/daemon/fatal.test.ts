import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditFs } from '../../src/adapters/audit/fs.js';
import { nodeAuditFs } from '../../src/adapters/audit/fs.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { BrokerDaemon } from '../../src/daemon/daemon.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';
import { BrokerError } from '../../src/errors.js';
import type { Logger } from '../../src/platform/logger.js';
import { brokerYaml } from '../support/daemon.js';

/**
 * Fatal errors stop the whole broker (issue 11 item 4, issue 15 item 2, issue 16 items 12-13):
 * one failing part aborts and awaits the others, the error keeps its code, and the process exits
 * non-zero instead of running half-dead.
 */
let dir: string;
let emulator: SpireEmulator;
let address: string;
let squatter: Server;
let takenPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sb-fatal-'));
  emulator = new SpireEmulator({ trustDomain: 'home.test', socketPath: join(dir, 'spire.sock') });
  ({ address } = await emulator.start());
  await writeFile(
    join(dir, 'allowlist.yaml'),
    'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n',
  );
  squatter = createServer();
  await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
  takenPort = (squatter.address() as { port: number }).port;
}, 30_000);

afterAll(async () => {
  squatter?.close();
  await emulator?.stop();
  await rm(dir, { recursive: true, force: true });
});

function configText(name: string, extra: string[] = []): string {
  return brokerYaml({
    dir: join(dir, name),
    spireAddress: address,
    allowlistFile: join(dir, 'allowlist.yaml'),
    extra,
  });
}

function recorder(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const rec =
    (level: string) =>
    (msg: string, fields?: Readonly<Record<string, unknown>>): void => {
      lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
    };
  return {
    lines,
    logger: { debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') },
  };
}

async function failureOf(p: Promise<unknown>, withinMs: number): Promise<BrokerError> {
  const started = Date.now();
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(Date.now() - started, 'the daemon stopped promptly').toBeLessThan(withinMs);
  expect(err).toBeInstanceOf(BrokerError);
  return err as BrokerError;
}

describe('fatal errors stop the whole daemon', () => {
  it('a listener that cannot bind: ERR_LISTEN, every other part stopped, nothing touches SPIRE afterwards', async () => {
    const { logger, lines } = recorder();
    const daemon = await BrokerDaemon.create(
      parseBrokerConfig(configText('bind', [`verify: { listen: 127.0.0.1:${takenPort} }`])),
      { logger },
    );
    const err = await failureOf(daemon.run(new AbortController().signal), 10_000);
    expect(err.code).toBe('ERR_LISTEN');
    expect(err.message).toMatch(/verify API cannot listen.*EADDRINUSE/);
    expect(lines.filter((l) => l.startsWith('error broker stopping'))).toHaveLength(1);
    expect(lines.find((l) => l.startsWith('error broker stopping'))).toContain('"code":"ERR_LISTEN"');
    // Nothing keeps running: no SPIRE call after the failure, no audit write.
    const calls = emulator.calls.length;
    const audit = await readFile(join(dir, 'bind', 'audit.log'), 'utf8');
    await new Promise((r) => setTimeout(r, 1000));
    expect(emulator.calls.length).toBe(calls);
    expect(await readFile(join(dir, 'bind', 'audit.log'), 'utf8')).toBe(audit);
    // …and the state lock was released: a new broker can take the directory.
    await expect(stat(join(dir, 'bind', 'state', 'broker.lock'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('an allowlist watcher that throws (its change cannot be audited) stops the broker with the code', async () => {
    let failAppends = false;
    const auditFs: AuditFs = {
      ...nodeAuditFs,
      openAppend: async (p) => {
        const h = await nodeAuditFs.openAppend(p);
        return {
          append: async (data) => {
            if (failAppends)
              throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
            await h.append(data);
          },
          sync: () => h.sync(),
          close: () => h.close(),
        };
      },
    };
    const allowlist = join(dir, 'watch-allowlist.yaml');
    await writeFile(allowlist, 'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n');
    const text = configText('watch').replace(join(dir, 'allowlist.yaml'), allowlist);
    const daemon = await BrokerDaemon.create(parseBrokerConfig(text), { auditFs });
    const running = daemon.run(new AbortController().signal);
    for (let i = 0; i < 200 && !daemon.view.readiness().ready; i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(daemon.view.readiness().ready).toBe(true);
    failAppends = true;
    await writeFile(allowlist, 'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\n# changed\npeers: []\n');
    const err = await failureOf(running, 30_000);
    expect(err.code).toBe('ERR_AUDIT_WRITE');
  });

  it('two brokers on one state directory: the second is refused with ERR_STATE_LOCKED, the first runs on', async () => {
    const text = configText('twice');
    const first = await BrokerDaemon.create(parseBrokerConfig(text));
    const stop = new AbortController();
    const running = first.run(stop.signal);
    for (let i = 0; i < 200 && !first.adminUrl; i++) await new Promise((r) => setTimeout(r, 25));
    const second = await BrokerDaemon.create(parseBrokerConfig(text));
    const err = await failureOf(second.run(new AbortController().signal), 5_000);
    expect(err.code).toBe('ERR_STATE_LOCKED');
    expect(err.message).toContain(`pid ${process.pid}`);
    const res = await fetch(`${first.adminUrl}/healthz`);
    expect(res.status).toBe(200);
    stop.abort();
    await running;
  });

  it('a state directory others can write is made private at start, with a warning', async () => {
    const state = join(dir, 'perm', 'state');
    await mkdir(state, { recursive: true });
    await chmod(state, 0o777);
    const { logger, lines } = recorder();
    const daemon = await BrokerDaemon.create(parseBrokerConfig(configText('perm')), { logger });
    const stop = new AbortController();
    const running = daemon.run(stop.signal);
    for (let i = 0; i < 200 && !daemon.adminUrl; i++) await new Promise((r) => setTimeout(r, 25));
    expect((await stat(state)).mode & 0o777).toBe(0o755);
    expect(lines.some((l) => l.startsWith('warn state directory was too open'))).toBe(true);
    stop.abort();
    await running;
  });
});

describe('spiffe-broker run exits non-zero with the code on fatal start-up errors', () => {
  function runCli(configFile: string): Promise<{ code: number | null; stderr: string; ms: number }> {
    const started = Date.now();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'run', '--config', configFile],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    return new Promise((resolve) =>
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr, ms: Date.now() - started });
      }),
    );
  }

  it('a listen address another process holds', async () => {
    const file = join(dir, 'cli-bind.yaml');
    await writeFile(file, configText('cli-bind', [`verify: { listen: 127.0.0.1:${takenPort} }`]));
    const r = await runCli(file);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.code).not.toBeNull(); // exited by itself, not killed by the test's timeout
    expect(r.stderr).toContain('ERR_LISTEN');
  }, 40_000);

  it('a missing endpoint certFile', async () => {
    const file = join(dir, 'cli-cert.yaml');
    await writeFile(
      file,
      configText('cli-cert', [
        'endpoint:',
        '  listen: 127.0.0.1:0',
        '  profile: https_web',
        `  certFile: ${join(dir, 'missing-cert.pem')}`,
        `  keyFile: ${join(dir, 'missing-key.pem')}`,
      ]),
    );
    const r = await runCli(file);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.stderr).toMatch(/ERR_(ENDPOINT_TLS_FILE|CONFIG_FILE)/);
  }, 40_000);
});
