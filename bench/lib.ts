/**
 * Shared benchmark plumbing: the {@link BenchResult} every `bench/*.bench.ts` module returns from
 * its `run()`, and {@link measure}, a small fixed-duration throughput loop. bench/run.ts imports
 * every bench module and writes docs/benchmarks.md from the results.
 * @module
 */

/** One benchmark compared against its baseline, both measured in the same run. */
export interface BenchResult {
  /** What was measured, e.g. `X509-SVID warm (cache)`. */
  name: string;
  /** Operations per second of the measured code. */
  opsPerSec: number;
  /** What it is compared with, e.g. `node:crypto parse+verify`. */
  baselineName: string;
  baselineOpsPerSec: number;
  /** `opsPerSec / baselineOpsPerSec`. */
  ratio: number;
  /** The target, human-readable, e.g. `>= 10x`. */
  goal: string;
  /** Whether `ratio` meets the goal. */
  met: boolean;
}

/** Options of {@link measure}. */
export interface MeasureOptions {
  /** Minimum measuring time, ms (after warm-up). Default 1000. */
  minMs?: number;
  /** Warm-up time, ms, so the JIT and caches settle first. Default minMs / 4. */
  warmupMs?: number;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

async function loop(fn: () => unknown, ms: number): Promise<{ ops: number; elapsed: number }> {
  const first = fn();
  const async = isThenable(first);
  if (async) await first;
  let ops = 1;
  let batch = 1;
  const start = performance.now();
  let elapsed = 0;
  // Batches grow so the clock is read rarely relative to fast operations.
  while (elapsed < ms) {
    if (async) for (let i = 0; i < batch; i++) await fn();
    else for (let i = 0; i < batch; i++) fn();
    ops += batch;
    elapsed = performance.now() - start;
    if (elapsed < ms / 20) batch *= 2;
  }
  return { ops: ops - 1, elapsed };
}

/**
 * Measures `a` and `b` alternately, `rounds` times each, and keeps each one's best throughput, so
 * load from other processes on a shared machine skews both sides alike.
 */
export async function measurePair(
  a: () => unknown,
  b: () => unknown,
  opts: MeasureOptions & { rounds?: number } = {},
): Promise<[number, number]> {
  let bestA = 0;
  let bestB = 0;
  for (let r = 0; r < (opts.rounds ?? 3); r++) {
    bestA = Math.max(bestA, await measure(a, opts));
    bestB = Math.max(bestB, await measure(b, opts));
  }
  return [bestA, bestB];
}

/**
 * Measures the throughput of `fn` (sync, or async — awaited one call at a time) in operations
 * per second over at least `minMs`, after a warm-up.
 *
 * @example
 * const opsPerSec = await measure(() => verifyX509Svid(chain, bundles, { now }), { minMs: 500 });
 */
export async function measure(fn: () => unknown, opts: MeasureOptions = {}): Promise<number> {
  const minMs = opts.minMs ?? 1000;
  await loop(fn, opts.warmupMs ?? minMs / 4);
  const { ops, elapsed } = await loop(fn, minMs);
  return (ops * 1000) / elapsed;
}

/** What {@link compare} takes: both throughputs and the minimum ratio that meets the goal. */
export interface Comparison {
  name: string;
  opsPerSec: number;
  baselineName: string;
  baselineOpsPerSec: number;
  /** The goal is `ratio >= minRatio`. */
  minRatio: number;
}

/** Builds a {@link BenchResult}, computing `ratio`, `goal` and `met`. */
export function compare(c: Comparison): BenchResult {
  const { name, opsPerSec, baselineName, baselineOpsPerSec, minRatio } = c;
  const ratio = opsPerSec / baselineOpsPerSec;
  return {
    name,
    opsPerSec: Math.round(opsPerSec),
    baselineName,
    baselineOpsPerSec: Math.round(baselineOpsPerSec),
    ratio: Math.round(ratio * 100) / 100,
    goal: `>= ${minRatio}x`,
    met: ratio >= minRatio,
  };
}

/**
 * An absolute figure with its goal (latency, memory, CPU), for benchmarks whose goal is not a ratio
 * to a baseline. A baseline may still be given for context.
 */
export interface BenchFigure {
  kind: 'figure';
  name: string;
  value: number;
  unit: string;
  goal: string;
  met: boolean;
  baselineName?: string;
  baselineValue?: number;
  note?: string;
}

/** What a bench module's `run()` may return. */
export type BenchOutput = BenchResult | BenchFigure;
