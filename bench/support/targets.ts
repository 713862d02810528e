/**
 * The SPIRE servers a benchmark broker writes into, behind one small interface: in-process
 * emulators (whose received calls can be counted) and real spire-server processes.
 * @module
 */
import { join } from 'node:path';
import { SpireServerClient } from '../../src/adapters/spire/client.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { type SpireServerProcess, startSpireServerProcess } from '../../src/lab/spire-process.js';
import { spireServerStatus } from '../../test/support/spire-harness.js';

/** One SPIRE server a benchmark broker writes into. */
export interface TargetServer {
  readonly name: string;
  readonly kind: 'emulator' | 'real';
  /** `unix:///…` */
  readonly address: string;
  readonly emulator?: SpireEmulator;
  readonly process?: SpireServerProcess;
  /** Federated bundles held (the own bundle not counted). */
  federatedCount(): Promise<number>;
  /** Sequence of the federated bundle of `td`, if held. */
  sequenceOf(td: string): Promise<bigint | undefined>;
  /** BatchSetFederatedBundle calls received so far (emulators only). */
  batchSetCalls(): number | undefined;
  stop(): Promise<void>;
}

export async function startEmulatorTarget(
  name: string,
  trustDomain: string,
  dir: string,
): Promise<TargetServer> {
  const emulator = new SpireEmulator({ trustDomain, socketPath: join(dir, `${name}.sock`) });
  const ep = await emulator.start();
  return {
    name,
    kind: 'emulator',
    address: ep.address,
    emulator,
    federatedCount: async () => emulator.datastore.countBundles() - 1,
    sequenceOf: async (td) => emulator.federatedBundle(td)?.sequence,
    batchSetCalls: () => emulator.calls.filter((c) => c.method === 'BatchSetFederatedBundle').length,
    stop: () => emulator.stop(),
  };
}

/** A real spire-server v1.15.3, or undefined (with the reason) when it is not installed. */
export async function startRealTarget(
  name: string,
  trustDomain: string,
  dir: string,
  extra: { bundleEndpoint?: boolean; refreshHint?: string; env?: Record<string, string> } = {},
): Promise<{ target?: TargetServer; reason?: string }> {
  const status = await spireServerStatus();
  if (!status.available) return { reason: status.reason };
  const proc = await startSpireServerProcess({
    bin: status.path,
    trustDomain,
    dir: join(dir, name),
    logLevel: 'WARN',
    ...(extra.bundleEndpoint ? { bundleEndpoint: true } : {}),
    ...(extra.refreshHint ? { bundleEndpointRefreshHint: extra.refreshHint } : {}),
    ...(extra.env ? { env: extra.env } : {}),
  });
  const client = new SpireServerClient({ address: proc.address, timeoutMs: 30_000 });
  return {
    target: {
      name,
      kind: 'real',
      address: proc.address,
      process: proc,
      federatedCount: async () => (await client.countBundles()) - 1,
      sequenceOf: async (td) => (await client.findFederatedBundle(td))?.sequence,
      batchSetCalls: () => undefined,
      async stop() {
        client.close();
        await proc.stop();
      },
    },
  };
}
