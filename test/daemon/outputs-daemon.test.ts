import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleFleet } from '../../bench/support/fleet.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { BrokerDaemon } from '../../src/daemon/daemon.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';

/**
 * Issue 12 item 6, through a running daemon: an accepted peer appears in the file outputs and in
 * /v1/status; removing it from the allowlist removes it from every output file within a second.
 */
let dir: string;
let fleet: BundleFleet;
let emulator: SpireEmulator;
let daemon: BrokerDaemon;
const stop = new AbortController();
let running: Promise<void>;
const outDir = () => join(dir, 'out');

async function allowlist(withPeer: boolean): Promise<void> {
  const lines = ['apiVersion: spiffe-broker.dev/v1', 'kind: Allowlist'];
  if (!withPeer) lines.push('peers: []');
  else
    lines.push(
      'peers:',
      `  - trustDomain: ${fleet.trustDomain(0)}`,
      `    bundleEndpoint: { urls: ["${fleet.url(0)}"], profile: https_web, caFile: ${join(dir, 'ca.pem')} }`,
    );
  await writeFile(join(dir, 'allowlist.yaml'), `${lines.join('\n')}\n`);
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 15_000): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}

const file = (name: string) => readFile(join(outDir(), name), 'utf8').catch(() => '');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sb-outputs-'));
  fleet = await BundleFleet.start({ count: 1, hintSeconds: 300 });
  emulator = new SpireEmulator({ trustDomain: 'home.test', socketPath: join(dir, 'spire.sock') });
  const { address } = await emulator.start();
  await writeFile(join(dir, 'ca.pem'), fleet.caPem);
  await allowlist(true);
  daemon = await BrokerDaemon.create(
    parseBrokerConfig(
      [
        'apiVersion: spiffe-broker.dev/v1',
        'kind: BrokerConfig',
        'trustDomain: home.test',
        `stateDir: ${join(dir, 'state')}`,
        `spire: { servers: [{ name: main, address: "${address}" }] }`,
        `allowlist: { file: ${join(dir, 'allowlist.yaml')} }`,
        'admin: { listen: 127.0.0.1:0 }',
        'verify: { listen: 127.0.0.1:0 }',
        `audit: { file: ${join(dir, 'audit.log')}, keyFile: ${join(dir, 'audit.key')}, fsync: never }`,
        `outputs: { files: { dir: ${outDir()}, formats: [grpc-bundle-map, bundle-map, pem] } }`,
        '',
      ].join('\n'),
    ),
  );
  running = daemon.run(stop.signal);
}, 30_000);

afterAll(async () => {
  stop.abort();
  await running;
  await fleet?.stop();
  await emulator?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('file outputs in a running daemon', () => {
  it('follow the accepted bundles, show in status, and drop a removed peer within a second', async () => {
    const td = fleet.trustDomain(0);
    await until('the peer in the bundle map file', async () => (await file('bundle-map.json')).includes(td));
    expect(await file('grpc-bundle-map.json')).toContain(td);
    expect(await file(`${td}.pem`)).toContain('BEGIN CERTIFICATE');
    const files = daemon.view.status().outputs?.files ?? [];
    expect(files.map((f) => f.format).sort()).toEqual(['bundle-map', 'grpc-bundle-map', 'pem']);
    expect(files.find((f) => f.format === 'bundle-map')?.trustDomains).toContain(td);
    await allowlist(false);
    // The allowlist watcher polls every 2 s; from the change taking effect, the files follow fast.
    await until('the allowlist change', () => daemon.manager.peers().length === 0);
    const ms = await until('the peer gone from every output file', async () => {
      const texts = await Promise.all(['bundle-map.json', 'grpc-bundle-map.json'].map(file));
      return texts.every((t) => t !== '' && !t.includes(td)) && (await file(`${td}.pem`)) === '';
    });
    expect(ms).toBeLessThan(1000);
  });
});
