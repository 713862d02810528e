/**
 * Scale: one broker (in its own process, so only it is measured) federating with 1,000 peer trust
 * domains served by one synthetic https_web bundle endpoint server (bench/support/fleet.ts,
 * refresh hint 300 s) under a host name per peer, as a real fleet (SCALE_HOSTS=shared: all on
 * 127.0.0.1), writing into 3 SPIRE emulators (each in a process of its own) plus one real
 * spire-server v1.15.3 when it is installed.
 *
 * Measured: cold start (daemon.run → every server holds all 1,000 bundles), the broker's peak RSS,
 * its steady-state CPU at 5-minute hints (process CPU over a window after convergence, no IPC in
 * the window), and how many BatchSetFederatedBundle calls each server gets when 50 peers rotate at
 * once (goal: exactly one each, carrying all 50). For the rotation phase the fleet turns on change
 * notification and the allowlist is touched, so every peer re-probes and holds a long-poll: a
 * rotation then reaches the broker as one burst, as it would from peer brokers.
 *
 * Env: SCALE_PEERS (1000), SCALE_STEADY_SECONDS (150), SCALE_SETTLE_SECONDS (5),
 * SCALE_ROTATIONS (3), SCALE_ROTATE (50), SCALE_HINT_SECONDS (300), SCALE_HOSTS=shared,
 * SCALE_REAL_SPIRE=0 to leave the real server out, SCALE_DEBUG=1 for per-thread CPU and batch sizes
 * (with BROKER_CHILD_GC=1 also the broker's GCs),
 * SCALE_MAX_IDLE=<n> to run the broker with `fetch.keepAlive.maxIdle: <n>` instead of `auto`.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchFigure } from './lib.js';
import { BrokerProcess, rssSampler } from './support/broker-process.js';
import { BundleFleet, FLEET_DOMAIN } from './support/fleet.js';
import { startEmulatorProcessTarget, startRealTarget, type TargetServer } from './support/targets.js';
import { threadCpu, threadCpuDelta } from './support/thread-cpu.js';
import { createWebServerCert } from './support/web-cert.js';

const RAW_FETCH_CHILD = new URL('./support/raw-fetch-child.ts', import.meta.url).pathname;

/** CPU per fetch of plain node:https on fresh TLS connections against the same fleet (a child). */
function rawFetchCpuMs(urlsFile: string, caFile: string, count: number): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', RAW_FETCH_CHILD, urlsFile, caFile, String(count), '40'],
      { timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`raw fetch baseline failed: ${stderr || err.message}`));
        const out = JSON.parse(stdout.trim()) as { cpuMsPerFetch: number; statuses: Record<string, number> };
        if (Object.keys(out.statuses).some((k) => k !== '304')) {
          return reject(new Error(`raw fetch baseline saw ${JSON.stringify(out.statuses)}`));
        }
        resolve(out.cpuMsPerFetch);
      },
    );
  });
}

const PEERS = Number(process.env.SCALE_PEERS ?? 1000);
const STEADY_SECONDS = Number(process.env.SCALE_STEADY_SECONDS ?? 150);
/** Seconds between convergence and the start of the steady window. */
const SETTLE_SECONDS = Number(process.env.SCALE_SETTLE_SECONDS ?? 5);
const BASELINE_FETCHES = Number(process.env.SCALE_BASELINE_FETCHES ?? 200);
const ROTATIONS = Number(process.env.SCALE_ROTATIONS ?? 3);
const ROTATE = Math.min(Number(process.env.SCALE_ROTATE ?? 50), PEERS);
/**
 * The V8 heap flags the product ships (Dockerfile and npm bin: --max-semi-space-size=4
 * --no-memory-reducer; deploy/base: --max-old-space-size=128 for ~1,000 peers, +40 MiB per further
 * 1,000). SCALE_NODE_ARGS overrides.
 */
/** Issue 13's goals: at 1,000 peers, and at 10,000 (items 1, 2 and 5). */
const GOALS =
  PEERS >= 10_000 ? { coldMs: 60_000, rssMiB: 1024, cpuPct: 10 } : { coldMs: 15_000, rssMiB: 200, cpuPct: 2 };
const NODE_ARGS = process.env.SCALE_NODE_ARGS?.split(' ').filter(Boolean) ?? [
  `--max-old-space-size=${128 + Math.max(0, Math.ceil((PEERS - 1000) / 1000)) * 40}`,
  '--max-semi-space-size=4',
  '--no-memory-reducer',
];
const TRUST_DOMAIN = 'broker.scale.test';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean> | boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

function allowlistYaml(fleet: BundleFleet, caFile: string, maxInterval: string): string {
  if (fleet.count === 0) return 'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n';
  const lines = ['apiVersion: spiffe-broker.dev/v1', 'kind: Allowlist', 'peers:'];
  for (let i = 0; i < fleet.count; i++) {
    lines.push(
      `  - trustDomain: ${fleet.trustDomain(i)}`,
      `    bundleEndpoint: { urls: ["${fleet.url(i)}"], profile: https_web, caFile: ${caFile} }`,
      `    refresh: { minInterval: 1s, maxInterval: ${maxInterval} }`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export async function run(): Promise<BenchFigure[]> {
  const dir = await mkdtemp(join(tmpdir(), 'sb-scale-'));
  const targets: TargetServer[] = [];
  let fleet: BundleFleet | undefined;
  let broker: BrokerProcess | undefined;
  try {
    fleet = await BundleFleet.start({
      count: PEERS,
      hintSeconds: Number(process.env.SCALE_HINT_SECONDS ?? 300),
      // One host name per peer, as in a real fleet (SCALE_HOSTS=shared: all on 127.0.0.1).
      hostPerPeer: process.env.SCALE_HOSTS !== 'shared',
    });
    // Each emulator in a process of its own, as SPIRE servers are: in this process, storing a
    // 4,000-bundle BatchSet blocked the fleet's event loop for seconds (bench/support/emulator-child.ts).
    for (const n of [1, 2, 3]) targets.push(await startEmulatorProcessTarget(`emu-${n}`, TRUST_DOMAIN, dir));
    let realNote = 'real spire-server: not included (SCALE_REAL_SPIRE=0)';
    if (process.env.SCALE_REAL_SPIRE !== '0') {
      const real = await startRealTarget('spire', TRUST_DOMAIN, dir);
      if (real.target) {
        targets.push(real.target);
        realNote = 'servers: 3 SPIRE emulators + 1 real spire-server v1.15.3';
      } else realNote = `real spire-server unavailable (${real.reason}); 3 emulators only`;
    }
    const caFile = join(dir, 'fleet-ca.pem');
    await writeFile(caFile, fleet.caPem);
    const web = await createWebServerCert();
    await writeFile(join(dir, 'ep.crt'), web.certPem);
    await writeFile(join(dir, 'ep.key'), web.keyPem);
    // Baseline before the broker starts, so nothing else competes for the CPU.
    const urlsFile = join(dir, 'urls.json');
    await writeFile(
      urlsFile,
      JSON.stringify(
        Array.from({ length: fleet.count }, (_, i) => ({ url: fleet!.url(i), etag: fleet!.etagOf(i) })),
      ),
    );
    const rawMs = await rawFetchCpuMs(urlsFile, caFile, BASELINE_FETCHES);
    const allowlistFile = join(dir, 'allowlist.yaml');
    await writeFile(allowlistFile, allowlistYaml(fleet, caFile, `${process.env.SCALE_HINT_SECONDS ?? 300}s`));
    const configFile = join(dir, 'broker.yaml');
    await writeFile(
      configFile,
      [
        'apiVersion: spiffe-broker.dev/v1',
        'kind: BrokerConfig',
        `trustDomain: ${TRUST_DOMAIN}`,
        `stateDir: ${join(dir, 'state')}`,
        'spire:',
        '  source: emu-1',
        '  servers:',
        ...targets.flatMap((t) => [
          `    - name: ${t.name}`,
          `      address: ${t.address}`,
          '      timeout: 30s',
        ]),
        `allowlist: { file: ${allowlistFile} }`,
        'admin: { listen: 127.0.0.1:0 }',
        'verify: { listen: 127.0.0.1:0 }',
        'endpoint:',
        '  listen: 127.0.0.1:0',
        '  profile: https_web',
        `  certFile: ${join(dir, 'ep.crt')}`,
        `  keyFile: ${join(dir, 'ep.key')}`,
        ...(process.env.SCALE_MAX_IDLE
          ? ['fetch:', '  keepAlive:', `    maxIdle: ${process.env.SCALE_MAX_IDLE}`]
          : []),
        '',
      ].join('\n'),
    );

    // --- cold start ---
    broker = await BrokerProcess.start(configFile, {
      nodeArgs: NODE_ARGS,
      env: { ...process.env, BROKER_CHILD_LOOPBACK_DOMAIN: FLEET_DOMAIN },
    });
    const rss = rssSampler(broker.pid);
    const runningAt = await Promise.race([
      broker.running,
      broker.exited.then(() => {
        throw new Error('broker exited before running');
      }),
    ]);
    const coldThreads = process.env.SCALE_DEBUG ? await threadCpu(broker.pid) : undefined;
    const machineBefore = process.env.SCALE_DEBUG ? await machineCpu() : undefined;
    const perServer = new Map<string, number>();
    await until(`every server to hold ${PEERS} bundles`, 120_000, async () => {
      for (const t of targets) {
        if (perServer.has(t.name)) continue;
        if ((await t.federatedCount()) >= PEERS) perServer.set(t.name, Date.now() - runningAt);
      }
      return perServer.size === targets.length;
    });
    const coldMs = Math.max(...perServer.values());
    const coldRss = rss.peak();
    if (process.env.SCALE_DEBUG_MEMORY)
      process.stdout.write(`scale: memory after cold start ${JSON.stringify(await broker.memory())}\n`);
    const afterCold = await broker.stats();
    const coldBatches = Object.fromEntries(Object.entries(afterCold.batches).map(([k, v]) => [k, v.length]));
    if (process.env.SCALE_DEBUG) {
      process.stdout.write(`scale: cold-start batch sizes ${JSON.stringify(afterCold.batches)}\n`);
      const rel = (t: number) => ((t - runningAt) / 1000).toFixed(1);
      process.stdout.write(
        `scale: cold start timeline (s after running): every 1,000th accepted bundle ${afterCold.acceptedMarks.map(rel).join(' ')}; batches sent→answered ${JSON.stringify(Object.fromEntries(Object.entries(afterCold.batchTimes).map(([k, v]) => [k, v.map(([a, b]) => `${rel(a)}→${b === 0 ? '?' : rel(b)}`)])))}; servers full ${JSON.stringify(Object.fromEntries([...perServer].map(([k, v]) => [k, (v / 1000).toFixed(1)])))}\n`,
      );
      const byName = threadCpuDelta(broker.pid, coldThreads!, await threadCpu(broker.pid));
      process.stdout.write(`scale: cold start CPU ticks (1/100 s) by thread ${JSON.stringify(byName)}\n`);
      if (afterCold.gc)
        process.stdout.write(`scale: GCs until fully synced ${JSON.stringify(afterCold.gc)}\n`);
      const m = await machineCpu();
      process.stdout.write(
        `scale: cold start machine CPU busy ${(((m.busy - machineBefore!.busy) / (m.total - machineBefore!.total)) * 100).toFixed(1)} % of ${cpus().length} cores\n`,
      );
    }

    // --- steady state at 5-minute hints ---
    await sleep(SETTLE_SECONDS * 1000); // let persistence and the first resync settle
    const threadsBefore = process.env.SCALE_DEBUG ? await threadCpu(broker.pid) : undefined;
    const fetchesBefore = fleet.stats.requests;
    const cpuBefore = (await broker.stats()).cpuMicros;
    const t0 = performance.now();
    await sleep(STEADY_SECONDS * 1000);
    const s1 = await broker.stats();
    const windowMs = performance.now() - t0;
    const fetches = fleet.stats.requests - fetchesBefore;
    const cpuPct = ((s1.cpuMicros - cpuBefore) / 1000 / windowMs) * 100;
    if (threadsBefore) {
      const byName = threadCpuDelta(broker.pid, threadsBefore, await threadCpu(broker.pid));
      process.stdout.write(`scale: window CPU ticks (1/100 s) by thread ${JSON.stringify(byName)}\n`);
    }
    if (process.env.SCALE_DEBUG)
      process.stdout.write(
        `scale: window peers ${JSON.stringify(s1.peers)} fleet ${JSON.stringify(fleet.stats)} fetches ${fetches}\n`,
      );
    const steadyRss = rss.last();
    const pollingPeak = rss.peak();

    // --- rotation bursts: 50 peers at once, long-poll mode ---
    if (ROTATIONS > 0) {
      fleet.longPoll = true;
      await writeFile(allowlistFile, allowlistYaml(fleet, caFile, '299s')); // every peer re-probes
      await until('every peer to hold a long-poll', 60_000, () => fleet!.heldNow() >= PEERS);
    }
    const rounds: { perServer: Record<string, number>; carried: Record<string, number>; ms: number }[] = [];
    for (let r = 0; r < ROTATIONS; r++) {
      await until('every peer to hold a long-poll', 60_000, () => fleet!.heldNow() >= PEERS);
      await sleep(500);
      const before = await broker.stats();
      const emuBefore = new Map(
        await Promise.all(targets.map(async (t) => [t.name, (await t.batchSetCalls()) ?? 0] as const)),
      );
      const indices = Array.from({ length: ROTATE }, (_, k) => (r * ROTATE + k * 7) % PEERS);
      const uniq = [...new Set(indices)];
      const want = new Map(uniq.map((i) => [fleet!.trustDomain(i), fleet!.bundle(i).sequence + 1n]));
      const started = performance.now();
      fleet.rotate(uniq);
      await until('the rotated bundles in every server', 60_000, async () => {
        for (const t of targets)
          for (const [td, seq] of want) if ((await t.sequenceOf(td)) !== seq) return false;
        return true;
      });
      const ms = performance.now() - started;
      await sleep(1_000); // a late extra batch would show up here
      const after = await broker.stats();
      const calls: Record<string, number> = {};
      const carried: Record<string, number> = {};
      for (const t of targets) {
        const sent = after.batches[t.name]!.slice(before.batches[t.name]!.length);
        calls[t.name] = sent.length;
        carried[t.name] = sent.reduce((a, b) => a + b, 0);
        const seen = await t.batchSetCalls();
        if (seen !== undefined && seen - emuBefore.get(t.name)! !== sent.length)
          throw new Error(
            `${t.name}: emulator saw ${seen - emuBefore.get(t.name)!} BatchSet calls, the broker sent ${sent.length}`,
          );
      }
      rounds.push({ perServer: calls, carried, ms });
    }
    const longPollPeak = rss.peak();
    rss.stop();
    if (process.env.SCALE_DEBUG && ROTATIONS > 0) {
      const end = await broker.stats();
      process.stdout.write(
        `scale: after the rotations RSS ${Math.round(end.rss / 2 ** 20)} MiB, heap used ${Math.round(end.heapUsed / 2 ** 20)} MiB, external ${Math.round(end.external / 2 ** 20)} MiB, long-polling ${end.longPolling}; peak ${Math.round(longPollPeak / 2 ** 20)} MiB; fleet ${JSON.stringify(fleet.stats)}\n`,
      );
    }
    const maxCalls = Math.max(0, ...rounds.flatMap((r) => Object.values(r.perServer)));
    const detail = rounds
      .map(
        (r, i) =>
          `round ${i + 1}: ${Object.entries(r.perServer)
            .map(([k, v]) => `${k} ${v} (${r.carried[k]} bundles)`)
            .join(', ')}; ${Math.round(r.ms)} ms`,
      )
      .join('; ');
    process.stdout.write(
      `scale: ${realNote}\nscale: cold-start batches per server ${JSON.stringify(coldBatches)}\nscale: ${detail}\n`,
    );

    return [
      {
        kind: 'figure',
        name: `cold start to fully synced, ${PEERS} peers × ${targets.length} SPIRE servers`,
        value: Math.round(coldMs),
        unit: 'ms',
        goal: `< ${GOALS.coldMs} ms`,
        met: coldMs < GOALS.coldMs,
        note: `${realNote}; daemon.run → every server holds all ${PEERS} bundles; BatchSet calls per server during it: ${Object.values(coldBatches).join('/')}`,
      },
      {
        kind: 'figure',
        name: `broker peak RSS, ${PEERS} peers at 300 s hints (cold start, poll cycles${ROTATIONS > 0 ? ', long-polls and rotations' : ''})`,
        value: Math.round(Math.max(pollingPeak, longPollPeak) / 2 ** 20),
        unit: 'MiB',
        goal: `< ${GOALS.rssMiB} MiB`,
        met: Math.max(pollingPeak, longPollPeak) < GOALS.rssMiB * 2 ** 20,
        note: `compiled JS, node ${NODE_ARGS.join(' ')} (as shipped); peak until the end of the polling window ${Math.round(pollingPeak / 2 ** 20)} MiB; peak during cold start ${Math.round(coldRss / 2 ** 20)} MiB, at the end of the steady window ${Math.round(steadyRss / 2 ** 20)} MiB (heap used ${Math.round(s1.heapUsed / 2 ** 20)} MiB, external ${Math.round(s1.external / 2 ** 20)} MiB)${ROTATIONS > 0 ? `; with every peer long-polling (${PEERS} held TLS connections) and the rotations: ${Math.round(longPollPeak / 2 ** 20)} MiB` : ''}`,
      },
      {
        kind: 'figure',
        name: `broker steady-state CPU, ${PEERS} peers at 300 s hints (polling)`,
        value: Math.round(cpuPct * 100) / 100,
        unit: '% of one core',
        goal: `< ${GOALS.cpuPct} % and <= 0.5x the plain client`,
        met: cpuPct < GOALS.cpuPct && cpuPct <= 0.5 * ((rawMs * fetches) / windowMs) * 100,
        baselineName: 'plain node:https making the same fetches (fresh TLS connection each, shared context)',
        baselineValue: Math.round(((rawMs * fetches) / windowMs) * 100 * 100) / 100,
        note: `${Math.round(windowMs / 1000)} s window after convergence with ${fetches} peer fetches (a hint/4 poll cycle is 67-82 s): ${((s1.cpuMicros - cpuBefore) / 1000 / Math.max(1, fetches)).toFixed(2)} ms broker CPU per fetch, SPIRE resyncs and the endpoint's source poll included, against ${rawMs.toFixed(2)} ms for the plain client`,
      },
      ...(PEERS >= 10_000
        ? [
            {
              kind: 'figure' as const,
              name: `BatchSetFederatedBundle calls per server for the cold start, ${PEERS} bundles`,
              value: Math.max(...Object.values(coldBatches)),
              unit: 'calls (max over servers)',
              goal: `<= ceil(${PEERS} / 4400) = ${Math.ceil(PEERS / 4400)}`,
              met: Math.max(...Object.values(coldBatches)) <= Math.ceil(PEERS / 4400),
              note: `per server: ${Object.entries(coldBatches)
                .map(([k, v]) => `${k} ${v}`)
                .join(', ')}`,
            },
          ]
        : []),
      {
        kind: 'figure',
        name: `BatchSetFederatedBundle calls per server when ${ROTATE} peers rotate at once`,
        value: maxCalls,
        unit: 'calls (max over servers and rounds)',
        goal: '= 1',
        met: maxCalls === 1,
        note: `${ROTATIONS} rounds, long-poll mode; ${detail}`,
      },
    ];
  } finally {
    await broker?.stop();
    await fleet?.stop();
    await Promise.allSettled(targets.map((t) => t.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

/** Busy and total jiffies of the whole machine, from /proc/stat (diagnostics). */
async function machineCpu(): Promise<{ busy: number; total: number }> {
  const f = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}
