import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleFleet } from '../../bench/support/fleet.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { marshalBundle } from '../../src/core/bundle/codec.js';
import { BrokerDaemon } from '../../src/daemon/daemon.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';
import { StateStore } from '../../src/engine/federation/state-store.js';
import { allowlistYaml, brokerYaml, until } from '../support/daemon.js';

/**
 * Restarts that lose state (issue 16, items 1 and 2), with a real daemon, a SPIRE emulator and a
 * real https_web peer on loopback: a lost last-known-good file while the peer is down must not
 * revoke the peer from SPIRE; the bundle is re-read from SPIRE and status says so; stored bundles
 * are re-parsed with the configured fetch limits.
 */
let dir: string;
let fleet: BundleFleet;
let emulator: SpireEmulator;
let address: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sb-restart-'));
  fleet = await BundleFleet.start({ count: 1, hintSeconds: 300 });
  fleet.rotate([0]);
  fleet.rotate([0]); // three JWT keys: a bundle over 1 KiB
  emulator = new SpireEmulator({ trustDomain: 'home.test', socketPath: join(dir, 'spire.sock') });
  ({ address } = await emulator.start());
  await writeFile(join(dir, 'ca.pem'), fleet.caPem);
  await writeFile(
    join(dir, 'allowlist.yaml'),
    allowlistYaml([{ trustDomain: fleet.trustDomain(0), url: fleet.url(0) }], join(dir, 'ca.pem')),
  );
}, 30_000);

afterAll(async () => {
  await fleet?.stop();
  await emulator?.stop();
  await rm(dir, { recursive: true, force: true });
});

function config(extra: string[] = []) {
  return parseBrokerConfig(brokerYaml({ dir, spireAddress: address, extra }));
}

async function start(extra: string[] = []) {
  const daemon = await BrokerDaemon.create(config(extra));
  const stop = new AbortController();
  const running = daemon.run(stop.signal);
  return {
    daemon,
    stop: async () => {
      stop.abort();
      await running;
    },
  };
}

describe('daemon restarts that lost state', () => {
  const td = () => fleet.trustDomain(0);

  it('a lost last-known-good file while the peer is down: SPIRE keeps the bundle, it is re-read as last-known-good', async () => {
    const first = await start();
    await until(
      'SPIRE to hold the peer bundle',
      () => emulator.federatedBundle(td())?.sequence === fleet.bundle(0).sequence,
    );
    await first.stop();

    await rm(join(dir, 'state', `${td()}.bundle.json`));
    const served = fleet.bundle(0);
    await fleet.stop(); // the peer is down at restart

    const second = await start();
    await until('the allowlist to load', () => second.daemon.view.peerStatus().length === 1);
    await second.daemon.view.reconcileNow();
    await second.daemon.view.reconcileNow();
    const held = emulator.federatedBundle(td());
    expect(held?.sequence, 'still in SPIRE after two reconciles').toBe(served.sequence);
    const st = second.daemon.view.peerStatus()[0]!;
    expect(st.bundleOrigin).toBe('spire:main');
    expect(st.sequence).toBe(served.sequence);
    expect(st.state).not.toBe('REVOKED');
    expect(second.daemon.view.status().peers[0]).toMatchObject({ bundleOrigin: 'spire:main' });
    const { peers } = await new StateStore({ dir: join(dir, 'state') }).loadAll();
    expect(peers.find((p) => p.trustDomain.name === td())?.lastKnownGood?.bundle.sequence).toBe(
      served.sequence,
    );
    await second.stop();
  });

  it('re-parses stored bundles with the configured fetch limits, not the 1 MiB default', async () => {
    // A stored bundle over a (lowered) fetch.maxBodyBytes is refused like a fetched one would be:
    // the store uses the configured limits (with a raised limit, the default would refuse instead).
    const bytes = Buffer.byteLength(marshalBundle(fleet.bundle(0)));
    expect(bytes).toBeGreaterThan(1024);
    const problems: string[] = [];
    const daemon = await BrokerDaemon.create(config(['fetch: { maxBodyBytes: 1024 }']), {
      logger: {
        debug: () => undefined,
        info: () => undefined,
        warn: () => undefined,
        error: (msg, fields) => {
          if (msg === 'state file problem') problems.push(String(fields?.code));
        },
      },
    });
    const stop = new AbortController();
    const running = daemon.run(stop.signal);
    await until('the state to load', () => daemon.view.peerStatus().length === 1);
    expect(problems).toEqual(['ERR_STATE_CORRUPT']);
    stop.abort();
    await running;
  });
});
