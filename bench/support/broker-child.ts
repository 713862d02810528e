/**
 * Runs one BrokerDaemon from a broker config file in its own process, so a benchmark can measure
 * the broker alone (RSS, CPU) while the load, the peers and the SPIRE servers live elsewhere.
 *
 * Usage (forked with an IPC channel): `node --import tsx bench/support/broker-child.ts <broker.yaml>`.
 * Messages in: `{ type: 'stats' }`, `{ type: 'refresh' }`, `{ type: 'stop' }`.
 * Messages out: `{ type: 'running', at }` right before `run()`, `{ type: 'urls', endpoint, verify }`
 * once it listens, `{ type: 'stats', … }`, and `{ type: 'exit', error? }`.
 * @module
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { writeHeapSnapshot } from 'node:v8';
import type { BundleItemResult } from '../../src/adapters/spire/client.js';
import { type SpireCallOptions, SpireServerClient } from '../../src/adapters/spire/client.js';
import type { TrustBundle } from '../../src/core/bundle/trust-bundle.js';
import { BrokerDaemon } from '../../src/daemon/daemon.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';

/** What the child answers to `{ type: 'stats' }`. */
export interface BrokerChildStats {
  readonly type: 'stats';
  readonly rss: number;
  readonly heapUsed: number;
  /** Memory of C++ objects bound to JS (TLS contexts, buffers), bytes. */
  readonly external: number;
  /** process.cpuUsage() user + system, microseconds. */
  readonly cpuMicros: number;
  /** Peers by state. */
  readonly peers: Record<string, number>;
  /** Peers whose updater holds a long-poll. */
  readonly longPolling: number;
  /** Per SPIRE server: trust domains synced, reachable. */
  readonly servers: { name: string; synced: number; reachable: boolean }[];
  /** Per SPIRE server: the size of every BatchSetFederatedBundle sent so far. */
  readonly batches: Record<string, number[]>;
  /** Accepted-bundle events so far. */
  readonly accepted: number;
  /** Date.now() at every 1,000th accepted bundle (diagnostics). */
  readonly acceptedMarks: number[];
  /** Per SPIRE server: Date.now() when each BatchSetFederatedBundle was sent and answered. */
  readonly batchTimes: Record<string, [number, number][]>;
  /** With BROKER_CHILD_GC=1: GCs since start by kind (minor, major, incremental, weak), count and ms. */
  readonly gc?: Record<string, { count: number; ms: number }>;
  readonly heldRequests: number;
}

const send = (m: unknown): void => {
  process.send?.(m);
};

const configPath = process.argv[2];
if (!configPath) throw new Error('usage: broker-child.ts <broker.yaml>');
const config = parseBrokerConfig(readFileSync(configPath, 'utf8'));
// BROKER_CHILD_GC=1: count every GC (PerformanceObserver; cheap) and report them in stats.
const GC_KINDS: Record<number, string> = { 1: 'minor', 4: 'major', 8: 'incremental', 16: 'weak' };
const gcTotals: Record<string, { count: number; ms: number }> | undefined = process.env.BROKER_CHILD_GC
  ? {}
  : undefined;
if (gcTotals) {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KINDS[(e as { detail?: { kind?: number } }).detail?.kind ?? 0] ?? 'other';
      const g = gcTotals[kind] ?? { count: 0, ms: 0 };
      gcTotals[kind] = g;
      g.count++;
      g.ms += e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
}
const batches: Record<string, number[]> = {};
const batchTimes: Record<string, [number, number][]> = {};
const acceptedMarks: number[] = [];
let accepted = 0;

class CountingClient extends SpireServerClient {
  readonly #name: string;
  constructor(name: string, opts: ConstructorParameters<typeof SpireServerClient>[0]) {
    super(opts);
    this.#name = name;
    batches[name] = [];
    batchTimes[name] = [];
  }
  override batchSetFederatedBundle(
    bundles: readonly TrustBundle[],
    opts?: SpireCallOptions & { fields?: never },
  ): Promise<BundleItemResult[]> {
    batches[this.#name]!.push(bundles.length);
    const times: [number, number] = [Date.now(), 0];
    batchTimes[this.#name]!.push(times);
    return super.batchSetFederatedBundle(bundles, opts).finally(() => {
      times[1] = Date.now();
    });
  }
}

// BROKER_CHILD_LOOPBACK_DOMAIN: bundle endpoint host names under this domain are dialled on
// 127.0.0.1 (the bench fleet's per-peer host names, which no resolver knows); TLS still checks
// the name in the URL.
const loopbackDomain = process.env.BROKER_CHILD_LOOPBACK_DOMAIN;
const daemon = await BrokerDaemon.create(config, {
  ...(loopbackDomain
    ? {
        fetchDeps: {
          connect: (o: tls.ConnectionOptions) =>
            tls.connect(o.host?.endsWith(`.${loopbackDomain}`) ? { ...o, host: '127.0.0.1' } : o),
        },
      }
    : {}),
  spireClient: (server, tls) =>
    new CountingClient(server.name, {
      address: server.address,
      timeoutMs: server.timeoutMs,
      ...(tls ? { tls } : {}),
    }),
  federationObserver: {
    accepted: () => {
      accepted++;
      if (accepted % 1000 === 0) acceptedMarks.push(Date.now());
    },
  },
});

const stop = new AbortController();
process.on('message', async (m: { type: string }) => {
  if (m.type === 'stop') stop.abort();
  else if (m.type === 'refresh') daemon.manager.refreshNow();
  else if (m.type === 'memory') {
    // Diagnostics: with --expose-gc, collect first so the figures show what is really held.
    (globalThis as { gc?: () => void }).gc?.();
    send({ type: 'memory', usage: process.memoryUsage(), heapTotal: process.memoryUsage().heapTotal });
  } else if (m.type === 'stats') {
    const peers: Record<string, number> = {};
    let longPolling = 0;
    for (const p of daemon.view.peerStatus()) {
      peers[p.state] = (peers[p.state] ?? 0) + 1;
      if (p.longPoll) longPolling++;
    }
    const cpu = process.cpuUsage();
    let heldRequests = 0;
    if (config.endpoint) heldRequests = (await daemon.endpoint()).app.bundleEndpoint.heldRequests();
    snapshotWhenHolding(heldRequests);
    const stats: BrokerChildStats = {
      type: 'stats',
      rss: process.memoryUsage.rss(),
      heapUsed: process.memoryUsage().heapUsed,
      external: process.memoryUsage().external,
      cpuMicros: cpu.user + cpu.system,
      peers,
      longPolling,
      servers: daemon.view.serverStatus().map((s) => ({
        name: s.name,
        synced: [...s.trustDomains.values()].filter((t) => t.synced).length,
        reachable: s.reachable,
      })),
      batches,
      batchTimes,
      acceptedMarks,
      ...(gcTotals ? { gc: structuredClone(gcTotals) } : {}),
      accepted,
      heldRequests,
    };
    send(stats);
  }
});
process.on('disconnect', () => stop.abort());

// Every newly published local bundle, timed just before held requests are released (this listener
// is registered before the endpoint's).
daemon.localBundle.subscribe((doc) => {
  const at = performance.timeOrigin + performance.now();
  send({ type: 'published', at, sequence: doc.bundle.sequence.toString() });
  // How long the broker itself spent answering (the release runs synchronously after this).
  setImmediate(() => send({ type: 'released', ms: performance.timeOrigin + performance.now() - at }));
});
// BROKER_CHILD_HEAP_SAMPLE=<startSec>:<seconds>:<file.heapprofile>: a sampling heap profile of
// that window, collected objects included, so it shows what ALLOCATES (what keeps the GC busy),
// not only what is held; open it in Chrome DevTools' memory tab. Also logs every GC of the
// window (count and milliseconds by kind) to <file>.gc.json.
const heapSample = process.env.BROKER_CHILD_HEAP_SAMPLE;
if (heapSample) {
  const [startSec, seconds, file] = heapSample.split(':');
  const { Session } = await import('node:inspector/promises');
  const { writeFile } = await import('node:fs/promises');
  const { PerformanceObserver } = await import('node:perf_hooks');
  const session = new Session();
  session.connect();
  const gcs: Record<string, { count: number; ms: number }> = {};
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = String((e as { detail?: { kind?: number } }).detail?.kind ?? '?');
      const g = gcs[kind] ?? { count: 0, ms: 0 };
      gcs[kind] = g;
      g.count++;
      g.ms += e.duration;
    }
  });
  setTimeout(() => {
    void session
      .post('HeapProfiler.startSampling', {
        samplingInterval: 4096,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      })
      .then(() => {
        observer.observe({ entryTypes: ['gc'] });
        setTimeout(async () => {
          observer.disconnect();
          const { profile } = await session.post('HeapProfiler.stopSampling');
          await writeFile(file!, JSON.stringify(profile));
          // GC kinds: 1 minor (scavenge), 4 major (mark-compact), 8 incremental, 16 weak callbacks.
          await writeFile(`${file}.gc.json`, JSON.stringify(gcs));
        }, Number(seconds) * 1000).unref();
      });
  }, Number(startSec) * 1000).unref();
}
// BROKER_CHILD_HEAP_SNAPSHOT=<sec>:<file.heapsnapshot>: one heap snapshot at that time, to see
// what the heap holds per peer.
const heapSnapshot = process.env.BROKER_CHILD_HEAP_SNAPSHOT;
if (heapSnapshot) {
  const [sec, file] = heapSnapshot.split(':');
  setTimeout(() => writeHeapSnapshot(file), Number(sec) * 1000).unref();
}
// BROKER_CHILD_SNAPSHOT_WHEN_HOLDING=<n>:<file.heapsnapshot>: one heap snapshot the first time a
// stats request finds at least n held requests (the long-poll bench asks until all are held);
// for diagnosis only: writing it delays that round's release.
function snapshotWhenHolding(held: number): void {
  const spec = process.env.BROKER_CHILD_SNAPSHOT_WHEN_HOLDING;
  if (!spec || snapshotTaken) return;
  const [n, file] = spec.split(':');
  if (held < Number(n)) return;
  snapshotTaken = true;
  // After the stats answer (the bench times those out); this round's figures are then skewed.
  setImmediate(() => writeHeapSnapshot(file));
}
let snapshotTaken = false;
send({ type: 'running', at: Date.now() });
const running = daemon.run(stop.signal);
// Where it listens, once it does: the bundle endpoint (when configured) and the verify API.
void (async () => {
  const endpoint = config.endpoint ? (await daemon.endpoint()).url : undefined;
  while (daemon.verifyUrl === undefined && !stop.signal.aborted) await new Promise((r) => setTimeout(r, 20));
  send({ type: 'urls', endpoint, verify: daemon.verifyUrl });
})().catch(() => undefined);
try {
  await running;
  send({ type: 'exit' });
} catch (err) {
  send({ type: 'exit', error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exitCode = 1;
}
process.disconnect?.();
