import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { brokerYaml } from '../support/daemon.js';

/**
 * Issue 13 item 2: @kubernetes/client-node is ~30 MiB of heap (module source and compiled code)
 * that a broker outside Kubernetes never uses, and that every major GC marks again. The daemon
 * loads its Kubernetes integration only when `kubernetes:` is configured. Proven in a child
 * process whose module resolution refuses the package: a plain broker runs, a Kubernetes one
 * hits the refusal (so the refusal really is in the way when the package is imported).
 */
let dir: string;
let emulator: SpireEmulator;
let address: string;
let hooks: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sb-lazy-k8s-'));
  emulator = new SpireEmulator({ trustDomain: 'home.test', socketPath: join(dir, 'spire.sock') });
  ({ address } = await emulator.start());
  await writeFile(
    join(dir, 'allowlist.yaml'),
    'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n',
  );
  // Module hooks (they run on their own thread): resolving the package fails loudly.
  await writeFile(
    join(dir, 'refuse.mjs'),
    [
      'export async function resolve(specifier, context, next) {',
      "  if (specifier === '@kubernetes/client-node' || specifier.startsWith('@kubernetes/client-node/'))",
      "    throw new Error('REFUSED_CLIENT_NODE');",
      '  return next(specifier, context);',
      '}',
      '',
    ].join('\n'),
  );
  hooks = join(dir, 'register.mjs');
  await writeFile(
    hooks,
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'refuse.mjs')).href)});\n`,
  );
}, 30_000);

afterAll(async () => {
  await emulator?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Runs the daemon from `configText` in a child until its admin API listens, then stops it. */
function runDaemon(configText: string): Promise<{ code: number | null; out: string }> {
  const daemonUrl = pathToFileURL(resolve('src/daemon/daemon.ts')).href;
  const configUrl = pathToFileURL(resolve('src/engine/config/broker-config.ts')).href;
  const script = `
    const { BrokerDaemon } = await import(${JSON.stringify(daemonUrl)});
    const { parseBrokerConfig } = await import(${JSON.stringify(configUrl)});
    const daemon = await BrokerDaemon.create(parseBrokerConfig(${JSON.stringify(configText)}));
    const stop = new AbortController();
    const running = daemon.run(stop.signal);
    running.catch(() => undefined);
    for (let i = 0; i < 400 && daemon.adminUrl === undefined; i++) {
      const settled = await Promise.race([running.then(() => true, () => true), new Promise((r) => setTimeout(() => r(false), 25))]);
      if (settled) break;
    }
    const listened = daemon.adminUrl !== undefined;
    stop.abort();
    try { await running; } catch (err) { console.log('RUN FAILED', String(err?.stack ?? err)); process.exit(3); }
    console.log(listened ? 'LISTENED' : 'NEVER LISTENED');
  `;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', pathToFileURL(hooks).href, '--input-type=module', '-e', script],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  return new Promise((done) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      done({ code, out });
    }),
  );
}

describe('the daemon loads @kubernetes/client-node only when Kubernetes is configured', () => {
  it('a broker without kubernetes: runs with the package unresolvable', async () => {
    const r = await runDaemon(
      brokerYaml({
        dir: join(dir, 'plain'),
        spireAddress: address,
        allowlistFile: join(dir, 'allowlist.yaml'),
      }),
    );
    expect(r.out).toContain('LISTENED');
    expect(r.out).not.toContain('REFUSED_CLIENT_NODE');
    expect(r.code, r.out).toBe(0);
  }, 60_000);

  it('a broker with kubernetes: needs the package (the refusal is hit)', async () => {
    const r = await runDaemon(
      brokerYaml({
        dir: join(dir, 'k8s'),
        spireAddress: address,
        allowlistFile: join(dir, 'allowlist.yaml'),
        extra: ['kubernetes: { namespace: spire }'],
      }),
    );
    expect(r.out).toContain('REFUSED_CLIENT_NODE');
    expect(r.code).not.toBe(0);
  }, 60_000);
});
