/**
 * Fuzzes the broker's parsers and verifiers with fast-check: bundle, Bundle Map, allowlist and
 * broker config parsing; X509-SVID (DER chains) and JWT-SVID verification. Every outcome must be a
 * value or a coded BrokerError with a documented code (verifiers: a result, never an exception),
 * never another exception, never a hang (a watchdog thread kills the run when one case takes
 * longer than --hang-seconds and prints how to replay it).
 *
 * Usage: node --import tsx scripts/fuzz.ts [--runs N] [--target <substring>] [--seed S] [--hang-seconds S]
 * Default 100,000 cases per target. Exit 0 when every property held, 1 otherwise, 3 on a hang.
 * The targets live in test/fuzz/targets.ts; test/fuzz/fuzz.test.ts runs them with fewer cases.
 */
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { fuzzTargets } from '../test/fuzz/targets.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '100000' },
    target: { type: 'string' },
    seed: { type: 'string' },
    'hang-seconds': { type: 'string', default: '30' },
  },
});
const runs = Number(values.runs);
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 2 ** 31;
const hangSeconds = Number(values['hang-seconds']);
if (!Number.isSafeInteger(runs) || runs < 1) throw new TypeError('--runs must be a positive integer');

// Watchdog: the main thread bumps a shared counter per case; the watchdog thread kills the process
// when it stops moving (a synchronous hang cannot be interrupted from the inside).
const shared = new Int32Array(new SharedArrayBuffer(8));
const watchdog = new Worker(
  `
  const { workerData } = require('node:worker_threads');
  const { writeSync } = require('node:fs');
  const counter = workerData.shared;
  let last = -1, since = Date.now();
  setInterval(() => {
    const now = Atomics.load(counter, 0);
    if (now !== last) { last = now; since = Date.now(); return; }
    if (Atomics.load(counter, 1) === 1 && Date.now() - since > workerData.hangMs) {
      writeSync(2, '\\nHANG: one case ran for more than ' + workerData.hangMs / 1000 + ' s (case ' + now +
        ' of the current target). Replay with --seed ' + workerData.seed + ' --target <name> and the same --runs.\\n');
      process.kill(process.pid, 'SIGKILL');
    }
  }, 500).unref();
  `,
  { eval: true, workerData: { shared, hangMs: hangSeconds * 1000, seed } },
);
watchdog.unref();

const targets = (await fuzzTargets()).filter((t) => !values.target || t.name.includes(values.target));
process.stdout.write(
  `fuzz: ${targets.length} targets × ${runs.toLocaleString('en-US')} cases, seed ${seed}\n`,
);
let failed = 0;
for (const target of targets) {
  const outcomes = new Map<string, number>();
  let slowest = 0;
  let slowInput: unknown;
  const started = performance.now();
  Atomics.store(shared, 1, 1);
  const result = fc.check(
    fc.property(target.arbitrary, (input) => {
      Atomics.add(shared, 0, 1);
      const t0 = performance.now();
      const outcome = target.run(input);
      const ms = performance.now() - t0;
      if (ms > slowest) {
        slowest = ms;
        slowInput = input;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }),
    { numRuns: runs, seed },
  );
  Atomics.store(shared, 1, 0);
  const seconds = (performance.now() - started) / 1000;
  const mix = [...outcomes].map(([k, v]) => `${k} ${v}`).join(', ');
  if (result.failed) {
    failed++;
    const input = result.counterexample?.[0];
    process.stdout.write(
      `FAIL  ${target.name} after ${result.numRuns} cases (${seconds.toFixed(1)} s, seed ${result.seed}, path ${result.counterexamplePath}):\n` +
        `      ${result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance)}\n` +
        `      input: ${input === undefined ? '?' : target.show(input as never)}\n`,
    );
  } else {
    process.stdout.write(
      `ok    ${target.name}: ${result.numRuns} cases in ${seconds.toFixed(1)} s (${mix}); slowest case ${slowest.toFixed(1)} ms\n`,
    );
    if (slowest > 1000 && slowInput !== undefined)
      process.stdout.write(`      slowest input: ${target.show(slowInput as never).slice(0, 500)}\n`);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
