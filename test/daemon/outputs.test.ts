import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBundle } from '../../src/adapters/endpoint/local-bundle.js';
import { BrokerMetrics, createMetricsRegistry } from '../../src/adapters/metrics/index.js';
import { parseBundleMap } from '../../src/core/bundle/index.js';
import { buildHubOutputs } from '../../src/daemon/outputs.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';
import type { PeerConfig } from '../../src/engine/config/types.js';
import { FederatedBundleStore } from '../../src/engine/federation/bundle-store.js';
import { nullLogger } from '../../src/platform/logger.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { makePki, type TestPki } from '../support/fixtures.js';

const config = (dir: string, extra = '') =>
  parseBrokerConfig(`apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: local.example
stateDir: /var/lib/b
spire:
  servers:
    - name: main
      address: unix:///run/spire.sock
allowlist: { file: /etc/al.yaml }
${extra.replace('DIR', dir)}`);

let local: TestPki;
let a: TestPki;
let dir: string;
beforeAll(async () => {
  [local, a] = await Promise.all([makePki('local.example'), makePki('a.example')]);
  dir = mkdtempSync(join(tmpdir(), 'hub-outputs-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('buildHubOutputs (the daemon wiring of outputs:)', () => {
  it('is nothing without outputs.files', () => {
    const parts = {
      store: new FederatedBundleStore(),
      localBundle: new LocalBundle({
        source: { getBundle: async () => local.bundle },
        trustDomain: local.td,
      }),
      peers: () => [],
      metrics: new BrokerMetrics({ registry: createMetricsRegistry(), clock: new FakeClock() }),
      logger: nullLogger,
      clock: new FakeClock(),
    };
    expect(buildHubOutputs(config(dir), parts)).toBeUndefined();
  });

  it('writes on store changes with the local bundle, counts metrics, keeps retained domains, reports status', async () => {
    const store = new FederatedBundleStore();
    const localBundle = new LocalBundle({
      source: { getBundle: async () => local.bundle },
      trustDomain: local.td,
    });
    await localBundle.refresh();
    const registry = createMetricsRegistry();
    const clock = new FakeClock();
    // gone.example is allowlisted but has no bundle held (state lost): its file stays.
    writeFileSync(join(dir, 'gone.example.pem'), local.root.pem);
    const outputs = buildHubOutputs(
      config(dir, 'outputs:\n  files: { dir: DIR, formats: [envoy-bundle-map, pem], includeLocal: true }\n'),
      {
        store,
        localBundle,
        peers: () => [
          { trustDomain: a.td } as PeerConfig,
          { trustDomain: { name: 'gone.example' } } as PeerConfig,
        ],
        metrics: new BrokerMetrics({ registry, clock }),
        logger: nullLogger,
        clock,
      },
    )!;
    expect(outputs.tasks.map((t) => t.name)).toEqual(['file outputs']);
    const ac = new AbortController();
    const running = outputs.tasks[0]!.run(ac.signal);
    const sink = outputs.fileOutputs!;
    const desired = (...held: TestPki[]) => ({
      bundles: new Map(held.map((p) => [p.td.name, p.bundle])),
      retained: new Set(['gone.example']),
    });
    // apply() runs after the loop's pass under way (passes never interleave): a way to wait for it.
    await sink.apply(desired());
    const mapFile = join(dir, 'envoy-bundle-map.json');
    expect([...parseBundleMap(readFileSync(mapFile)).bundles.keys()]).toEqual(['local.example']);
    store.set(a.bundle);
    // One macrotask turn: the loop wakes (microtasks) and queues its pass before ours, so ours,
    // waiting behind it, finds nothing left to write — the task followed the store by itself.
    await new Promise((r) => setImmediate(r));
    expect(await sink.apply(desired(a))).toEqual({ ok: true, written: [], removed: [], failed: [] });
    expect([...parseBundleMap(readFileSync(mapFile)).bundles.keys()]).toEqual(['a.example', 'local.example']);
    expect(existsSync(join(dir, 'a.example.pem'))).toBe(true);
    expect(existsSync(join(dir, 'gone.example.pem'))).toBe(true);
    const status = outputs.status();
    expect(status.files?.map((f) => [f.format, f.trustDomains])).toEqual([
      ['envoy-bundle-map', ['a.example', 'local.example']],
      ['pem', ['a.example', 'local.example']],
    ]);
    const text = await registry.metrics();
    expect(text).toMatch(/spiffe_broker_output_file_write_total\{format="pem",result="written"\} 2/);
    expect(text).toMatch(/spiffe_broker_output_pass_duration_seconds_count\{output="files"\} [1-9]/);
    ac.abort();
    await running;
  });
});
