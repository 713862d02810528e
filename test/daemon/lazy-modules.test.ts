import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createX509Svid } from '../../src/adapters/pki/index.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { SpiffeId } from '../../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../src/core/spiffeid/trust-domain.js';
import { makeCa } from '../adapters/endpoint/fixtures.js';
import { brokerYaml } from '../support/daemon.js';

/**
 * Issue 13 items 1-2: @kubernetes/client-node is ~30 MiB of heap (module source and compiled
 * code) that a broker outside Kubernetes never uses and that every major GC marks again;
 * @peculiar/x509 (with its ASN.1 stack) is needed only to mint the broker's own SVID. The daemon
 * loads each only when its configuration needs it. Proven in child processes whose module
 * resolution refuses the packages: a plain https_web broker runs without them, and a broker that
 * needs one hits the refusal (so the refusal really is in the way when a package is imported).
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
      "const refused = (process.env.REFUSE_PACKAGES ?? '').split(',').filter(Boolean);",
      'export async function resolve(specifier, context, next) {',
      '  for (const p of refused)',
      "    if (specifier === p || specifier.startsWith(p + '/')) throw new Error('REFUSED ' + p);",
      '  return next(specifier, context);',
      '}',
      '',
    ].join('\n'),
  );
  const ca = await makeCa(TrustDomain.parse('web-ca.test'));
  const cert = await createX509Svid({
    id: SpiffeId.parse('spiffe://home.test/web'),
    issuer: ca,
    notBefore: new Date(Date.now() - 3_600_000),
    notAfter: new Date(Date.now() + 86_400_000),
    dnsNames: ['localhost'],
  });
  await writeFile(join(dir, 'tls.crt'), cert.pem);
  await writeFile(join(dir, 'tls.key'), cert.privateKeyPem!);
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
function runDaemon(
  configText: string,
  refuse: readonly string[],
): Promise<{ code: number | null; out: string }> {
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
    // With an endpoint configured, wait for it too (its credentials are what may load a package).
    if (daemon.adminUrl !== undefined && ${JSON.stringify(configText.includes('endpoint:'))})
      await Promise.race([daemon.endpoint(), running]).catch(() => undefined);
    const listened = daemon.adminUrl !== undefined;
    stop.abort();
    try { await running; } catch (err) { console.log('RUN FAILED', String(err?.stack ?? err)); process.exit(3); }
    console.log(listened ? 'LISTENED' : 'NEVER LISTENED');
  `;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', pathToFileURL(hooks).href, '--input-type=module', '-e', script],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REFUSE_PACKAGES: refuse.join(',') } },
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

const K8S = '@kubernetes/client-node';
const X509 = '@peculiar/x509';

/** A broker config in its own directory, with the shared allowlist and these extra lines. */
const config = (name: string, extra: string[]): string =>
  brokerYaml({
    dir: join(dir, name),
    spireAddress: address,
    allowlistFile: join(dir, 'allowlist.yaml'),
    extra,
  });

describe('the daemon loads heavy packages only when its configuration uses them', () => {
  it('a broker with an https_web endpoint and no kubernetes: runs with neither package resolvable', async () => {
    const r = await runDaemon(
      config('plain', [
        `endpoint: { listen: 127.0.0.1:0, profile: https_web, certFile: ${join(dir, 'tls.crt')}, keyFile: ${join(dir, 'tls.key')} }`,
      ]),
      [K8S, X509],
    );
    expect(r.out).toContain('LISTENED');
    expect(r.out).not.toContain('REFUSED');
    expect(r.code, r.out).toBe(0);
  }, 60_000);

  it('a broker with kubernetes: needs @kubernetes/client-node (the refusal is hit)', async () => {
    const r = await runDaemon(config('k8s', ['kubernetes: { namespace: spire }']), [K8S]);
    expect(r.out).toContain(`REFUSED ${K8S}`);
    expect(r.code).not.toBe(0);
  }, 60_000);

  it('a broker minting its own SVID (https_spiffe endpoint): needs @peculiar/x509 (the refusal is hit)', async () => {
    const r = await runDaemon(
      config('spiffe', ['endpoint: { listen: 127.0.0.1:0, profile: https_spiffe }']),
      [X509],
    );
    expect(r.out).toContain(`REFUSED ${X509}`);
    expect(r.code).not.toBe(0);
  }, 60_000);
});
