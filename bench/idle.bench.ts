/**
 * Idle CPU: a broker with nothing to do — an empty allowlist, its bundle endpoint up with no
 * long-poll held, its local bundle read from a real spire-server v1.15.3 (the emulator when the
 * binary is missing) — measured over a window after warm-up, as process CPU (utime + stime from
 * /proc, every thread).
 * Baseline in the same run: a bare Node process with one 1 s interval timer.
 *
 * Goal (issue 13): < 0.3 % of a core. What keeps it there: the local-bundle poll runs every 5 s
 * while nobody waits and every 250 ms while a peer holds a long-poll (the propagation path keeps
 * its cadence: bench/propagation.bench.ts), and reads only SPIRE's bundle sequence number
 * between full reads (at least every 60 s).
 *
 * Env: IDLE_WINDOW_SECONDS (60), IDLE_WARMUP_SECONDS (30).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchFigure } from './lib.js';
import { type BrokerProcess, startWebEndpointBroker } from './support/broker-process.js';
import { startEmulatorTarget, startRealTarget, type TargetServer } from './support/targets.js';

const TD = 'idle.test';
const WINDOW_S = Number(process.env.IDLE_WINDOW_SECONDS ?? 60);
/**
 * After start-up V8's memory reducer runs a few full GCs once allocation stops (start-up garbage):
 * not idle cost, so the window starts after it. IDLE_WARMUP_SECONDS (30).
 */
const WARMUP_MS = Number(process.env.IDLE_WARMUP_SECONDS ?? 30) * 1000;
/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ; 100 on Linux). */
const TICKS = 100;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a process, seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the command: state is field 3, utime 14 and stime 15 (1-based), i.e. indexes 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** Percent of one core a process used over `seconds`. */
async function cpuPercent(pid: number, seconds: number): Promise<number> {
  const before = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const elapsed = (performance.now() - t0) / 1000;
  return ((cpuSeconds(pid) - before) / elapsed) * 100;
}

const round = (n: number) => Math.round(n * 1000) / 1000;

export async function run(): Promise<BenchFigure[]> {
  const dir = await mkdtemp(join(tmpdir(), 'sb-idle-'));
  let target: TargetServer | undefined;
  let broker: BrokerProcess | undefined;
  try {
    // Baseline first, with nothing else running.
    const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    await sleep(5_000);
    const bareCpu = await cpuPercent(bare.pid!, WINDOW_S);
    bare.kill();

    const real = await startRealTarget('spire', TD, dir);
    target = real.target ?? (await startEmulatorTarget('spire', TD, dir));
    ({ broker } = await startWebEndpointBroker(dir, { trustDomain: TD, spireAddress: target.address }));
    await sleep(WARMUP_MS);
    const brokerCpu = await cpuPercent(broker.pid, WINDOW_S);
    return [
      {
        kind: 'figure',
        name: 'broker idle CPU (no peers due, no long-poll held)',
        value: round(brokerCpu),
        unit: '% of a core',
        goal: '< 0.3 %',
        met: brokerCpu < 0.3,
        baselineName: 'bare Node process with a 1 s timer',
        baselineValue: round(bareCpu),
        note: `${WINDOW_S} s window after ${WARMUP_MS / 1000} s warm-up; source: ${target.kind === 'real' ? 'real spire-server 1.15.3' : `SPIRE emulator (${real.reason})`}; /proc utime+stime at 10 ms resolution`,
      },
    ];
  } finally {
    await broker?.stop();
    await target?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
