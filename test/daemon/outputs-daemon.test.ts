import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BundleFleet } from '../../bench/support/fleet.js';
import type { BrokerDaemon } from '../../src/daemon/daemon.js';
import { type OnePeerBroker, startOnePeerBroker, until } from '../support/daemon.js';

/**
 * Issue 12 item 6, through a running daemon: an accepted peer appears in the file outputs and in
 * /v1/status; removing it from the allowlist removes it from every output file within a second.
 */
let b: OnePeerBroker;
let dir: string;
let fleet: BundleFleet;
let daemon: BrokerDaemon;
const outDir = () => join(dir, 'out');
const allowlist = (withPeer: boolean) => b.writeAllowlist(withPeer);
const file = (name: string) => readFile(join(outDir(), name), 'utf8').catch(() => '');

beforeAll(async () => {
  b = await startOnePeerBroker('sb-outputs-', (d) => [
    `outputs: { files: { dir: ${join(d, 'out')}, formats: [grpc-bundle-map, bundle-map, pem] } }`,
  ]);
  ({ dir, fleet, daemon } = b);
}, 30_000);

afterAll(() => b?.stop());

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
