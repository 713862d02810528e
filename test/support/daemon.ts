import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BundleFleet } from '../../bench/support/fleet.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { BrokerDaemon } from '../../src/daemon/daemon.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';

/**
 * Shared pieces of the daemon tests (test/daemon/*): a broker.yaml for a broker on loopback with
 * one SPIRE server and its files in `dir`, an allowlist of https_web peers, and a bounded wait.
 */

/** broker.yaml text: trust domain home.test, state/audit in `dir`, admin and verify on port 0. */
export function brokerYaml(opts: {
  readonly dir: string;
  readonly spireAddress: string;
  readonly allowlistFile?: string;
  readonly stateDir?: string;
  readonly extra?: readonly string[];
}): string {
  const { dir } = opts;
  const extra = opts.extra ?? [];
  return [
    'apiVersion: spiffe-broker.dev/v1',
    'kind: BrokerConfig',
    'trustDomain: home.test',
    `stateDir: ${opts.stateDir ?? join(dir, 'state')}`,
    `spire: { servers: [{ name: main, address: "${opts.spireAddress}" }] }`,
    `allowlist: { file: ${opts.allowlistFile ?? join(dir, 'allowlist.yaml')} }`,
    ...(extra.some((l) => l.startsWith('admin:')) ? [] : ['admin: { listen: 127.0.0.1:0 }']),
    ...(extra.some((l) => l.startsWith('verify:')) ? [] : ['verify: { listen: 127.0.0.1:0 }']),
    `audit: { file: ${join(dir, 'audit.log')}, keyFile: ${join(dir, 'audit.key')}, fsync: never }`,
    ...extra,
    '',
  ].join('\n');
}

/** An allowlist of https_web peers trusting `caFile` (none: `peers: []`). */
export function allowlistYaml(
  peers: readonly { trustDomain: string; url: string }[],
  caFile: string,
): string {
  const lines = ['apiVersion: spiffe-broker.dev/v1', 'kind: Allowlist'];
  if (peers.length === 0) lines.push('peers: []');
  else {
    lines.push('peers:');
    for (const p of peers)
      lines.push(
        `  - trustDomain: ${p.trustDomain}`,
        `    bundleEndpoint: { urls: ["${p.url}"], profile: https_web, caFile: ${caFile} }`,
      );
  }
  return `${lines.join('\n')}\n`;
}

/** Waits until `cond` holds (polling every 20 ms), at most `ms`; returns how long it took. */
export async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  ms = 15_000,
): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}

/** A running broker federating with one https_web peer of a synthetic fleet, on a SPIRE emulator. */
export interface OnePeerBroker {
  readonly dir: string;
  readonly fleet: BundleFleet;
  readonly emulator: SpireEmulator;
  readonly daemon: BrokerDaemon;
  /** Rewrites the allowlist with the peer, or empty. */
  writeAllowlist(withPeer: boolean): Promise<void>;
  /** Stops the broker, the peer and SPIRE, and removes the directory. */
  stop(): Promise<void>;
}

/** Starts {@link OnePeerBroker}; `extra(dir)` lines go into broker.yaml. */
export async function startOnePeerBroker(
  prefix: string,
  extra: (dir: string) => readonly string[] = () => [],
): Promise<OnePeerBroker> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const fleet = await BundleFleet.start({ count: 1, hintSeconds: 300 });
  const emulator = new SpireEmulator({ trustDomain: 'home.test', socketPath: join(dir, 'spire.sock') });
  const { address } = await emulator.start();
  await writeFile(join(dir, 'ca.pem'), fleet.caPem);
  const writeAllowlist = async (withPeer: boolean): Promise<void> => {
    const peers = withPeer ? [{ trustDomain: fleet.trustDomain(0), url: fleet.url(0) }] : [];
    await writeFile(join(dir, 'allowlist.yaml'), allowlistYaml(peers, join(dir, 'ca.pem')));
  };
  await writeAllowlist(true);
  const daemon = await BrokerDaemon.create(
    parseBrokerConfig(brokerYaml({ dir, spireAddress: address, extra: extra(dir) })),
  );
  const ac = new AbortController();
  const running = daemon.run(ac.signal);
  return {
    dir,
    fleet,
    emulator,
    daemon,
    writeAllowlist,
    async stop() {
      ac.abort();
      await running;
      await fleet.stop();
      await emulator.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
