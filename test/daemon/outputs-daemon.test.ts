import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleFleet } from '../../bench/support/fleet.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { BrokerDaemon } from '../../src/daemon/daemon.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';
import { allowlistYaml, brokerYaml, until } from '../support/daemon.js';

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
  const peers = withPeer ? [{ trustDomain: fleet.trustDomain(0), url: fleet.url(0) }] : [];
  await writeFile(join(dir, 'allowlist.yaml'), allowlistYaml(peers, join(dir, 'ca.pem')));
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
      brokerYaml({
        dir,
        spireAddress: address,
        extra: [`outputs: { files: { dir: ${outDir()}, formats: [grpc-bundle-map, bundle-map, pem] } }`],
      }),
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
    // One pass writes the files one after the other: wait for the last of them.
    await until(
      'the peer in every output file',
      async () =>
        (await file('bundle-map.json')).includes(td) &&
        (await file('grpc-bundle-map.json')).includes(td) &&
        (await file(`${td}.pem`)).includes('BEGIN CERTIFICATE') &&
        (daemon.view.status().outputs?.files ?? []).every((f) => f.trustDomains.includes(td)),
    );
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
