import { execFile } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Issue 15 item 6: spiffe-broker installs and runs without the checkout. `npx spiffe-broker`
 * outside the checkout asks the public registry for a package of that name (a dependency-confusion
 * risk), so the documented path is: `npm pack` in the checkout (the `prepare` script builds dist/),
 * `npm install -g` of that tarball (production dependencies only), then the `spiffe-broker` on
 * PATH. This test does exactly that into a temp prefix and runs the installed CLI from a temp
 * working directory that is not the checkout.
 */
const root = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The environment without npm's per-run variables (`npm test` exports npm_config_*). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.toLowerCase().startsWith('npm_') && k !== 'NODE_PATH' && k !== 'NODE_OPTIONS') env[k] = v;
  }
  // The same Node that runs the tests runs `npm` and the installed CLI's `#!/usr/bin/env node`.
  env.PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;
  return { ...env, ...extra };
}

function run(file: string, args: readonly string[], cwd: string, timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      { cwd, env: cleanEnv(), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: `${stderr}${err && code === 1 ? err.message : ''}` });
      },
    );
  });
}

const npm = join(dirname(process.execPath), 'npm');
const npmBin = existsSync(npm) ? npm : 'npm';

let base: string;
let tarball: string;
let prefix: string;
let cwd: string;
let installLog = '';

describe('install from an npm pack tarball, run outside the checkout', () => {
  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'spiffe-broker-install-'));
    mkdirSync(join(base, 'pack'));
    cwd = join(base, 'cwd');
    mkdirSync(cwd);
    prefix = join(base, 'prefix');

    const pack = await run(
      npmBin,
      ['pack', '--pack-destination', join(base, 'pack'), '--json'],
      root,
      180_000,
    );
    expect(pack.code, `npm pack failed:\n${pack.stderr}`).toBe(0);
    const packed = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string }[];
    tarball = join(base, 'pack', packed[0]!.filename);
    expect(existsSync(tarball)).toBe(true);

    // Production dependencies only, from the registry (or npm's cache); one retry for a flaky network.
    const args = [
      'install',
      '-g',
      '--prefix',
      prefix,
      '--omit=dev',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      tarball,
    ];
    let install = await run(npmBin, args, cwd, 240_000);
    if (install.code !== 0) {
      rmSync(prefix, { recursive: true, force: true });
      install = await run(npmBin, args, cwd, 240_000);
    }
    installLog = `${install.stdout}\n${install.stderr}`;
    expect(install.code, `npm install -g failed:\n${installLog}`).toBe(0);
    for (const f of ['broker.yaml', 'allowlist.yaml'])
      copyFileSync(join(root, 'examples', 'install', f), join(cwd, f));
  }, 500_000);

  afterAll(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('the tarball holds the built CLI and no sources or tests', async () => {
    const list = await run('tar', ['-tzf', tarball], base, 30_000);
    expect(list.code).toBe(0);
    const files = list.stdout.split('\n').filter(Boolean);
    expect(files).toContain('package/dist/cli/main.js');
    expect(files).toContain('package/package.json');
    expect(files.filter((f) => f.startsWith('package/test/') || f.startsWith('package/src/'))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
  });

  it('installs a spiffe-broker command and only production dependencies', () => {
    const bin = join(prefix, 'bin', 'spiffe-broker');
    expect(lstatSync(bin).isSymbolicLink() || lstatSync(bin).isFile()).toBe(true);
    const installed = join(prefix, 'lib', 'node_modules', 'spiffe-broker');
    expect(existsSync(join(installed, 'dist', 'cli', 'main.js'))).toBe(true);
    const deps = readdirSync(join(installed, 'node_modules'));
    for (const dev of ['vitest', 'typescript', 'tsx', '@biomejs', 'fast-check', 'autocannon']) {
      expect(deps, `${dev} is a devDependency`).not.toContain(dev);
    }
    for (const prod of ['fastify', '@grpc', 'yaml', 'jose']) expect(deps).toContain(prod);
  });

  it('spiffe-broker --help runs from a directory that is not the checkout', async () => {
    const r = await run(join(prefix, 'bin', 'spiffe-broker'), ['--help'], cwd, 30_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^usage: spiffe-broker <command>/);
    for (const cmd of ['run', 'status', 'check-config', 'fetch', 'bundle', 'verify', 'audit']) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${cmd}\\s`, 'm'));
    }
  });

  it('check-config validates the example broker config and its allowlist (paths relative to the cwd)', async () => {
    const cli = join(prefix, 'bin', 'spiffe-broker');
    const broker = await run(cli, ['check-config', 'broker.yaml'], cwd, 30_000);
    expect(broker.code, `${broker.stdout}\n${broker.stderr}`).toBe(0);
    expect(broker.stdout).toMatch(/valid BrokerConfig for example\.org/);
    const allowlist = await run(
      cli,
      ['check-config', 'allowlist.yaml', '--broker-config', 'broker.yaml', '--json'],
      cwd,
      30_000,
    );
    expect(allowlist.code, allowlist.stderr).toBe(0);
    expect(JSON.parse(allowlist.stdout)).toMatchObject({
      ok: true,
      kind: 'Allowlist',
      peers: ['partner.example'],
    });
  });

  it('check-config refuses a broken config with a coded issue and exit 1', async () => {
    writeFileSync(
      join(cwd, 'typo.yaml'),
      'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers:\n  - trustDomian: partner.example\n',
    );
    const r = await run(
      join(prefix, 'bin', 'spiffe-broker'),
      ['check-config', 'typo.yaml', '--json'],
      cwd,
      30_000,
    );
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as {
      ok: boolean;
      issues: { line: number; code: string; message: string }[];
    };
    expect(out.ok).toBe(false);
    expect(out.issues.some((i) => i.line === 4 && /trustDomain/.test(i.message))).toBe(true);
  });
});
