/**
 * The SPIRE servers a benchmark broker writes into, behind one small interface: emulators (whose
 * received calls can be counted), in-process or in a process of their own, and real spire-server
 * processes.
 * @module
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { SpireServerClient } from '../../src/adapters/spire/client.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { type SpireServerProcess, startSpireServerProcess } from '../../src/lab/spire-process.js';
import { spireServerStatus } from '../../test/support/spire-harness.js';
import { compiledPath } from './compile.js';

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
  batchSetCalls(): Promise<number | undefined>;
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
    batchSetCalls: async () => emulator.calls.filter((c) => c.method === 'BatchSetFederatedBundle').length,
    stop: () => emulator.stop(),
  };
}

const EMULATOR_CHILD = new URL('./emulator-child.ts', import.meta.url).pathname;

/**
 * An emulator in a child process (bench/support/emulator-child.ts), so the storing work of large
 * BatchSets does not block the calling process — e.g. the synthetic peer fleet it serves.
 */
export async function startEmulatorProcessTarget(
  name: string,
  trustDomain: string,
  dir: string,
): Promise<TargetServer> {
  const child = fork(await compiledPath(EMULATOR_CHILD), [trustDomain, join(dir, `${name}.sock`)], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const address = await new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`emulator ${name} exited ${code} before listening`)));
    child.once('message', (m: { type: string; address: string }) => resolve(m.address));
  });
  let nextId = 0;
  const ask = <T>(type: string, td?: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const on = (m: { id?: number; value: T }): void => {
        if (m.id !== id) return;
        child.off('message', on);
        child.off('exit', onExit);
        resolve(m.value);
      };
      const onExit = (): void => reject(new Error(`emulator ${name} exited`));
      child.on('message', on);
      child.once('exit', onExit);
      child.send({ id, type, ...(td !== undefined ? { td } : {}) });
    });
  return {
    name,
    kind: 'emulator',
    address,
    federatedCount: () => ask<number>('count'),
    sequenceOf: async (td) => {
      const v = await ask<string | undefined>('sequenceOf', td);
      return v === undefined ? undefined : BigInt(v);
    },
    batchSetCalls: () => ask<number>('batchSetCalls'),
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.send({ type: 'stop' });
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      await exited;
    },
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
      batchSetCalls: async () => undefined,
      async stop() {
        client.close();
        await proc.stop();
      },
    },
  };
}
