/**
 * `npm run bench`: runs every bench/*.bench.ts module in turn (never in parallel: two cores),
 * prints each figure beside its baseline measured in the same run, and rewrites
 * docs/benchmarks.md. `npm run bench -- verify endpoint` runs only the named modules.
 */
import { execSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, join } from 'node:path';
import type { BenchOutput } from './lib.js';

const here = new URL('.', import.meta.url).pathname;
const only = process.argv.slice(2);
const modules = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => basename(f, '.bench.ts'))
  .filter((m) => only.length === 0 || only.includes(m))
  .sort();

const sections: { module: string; results: BenchOutput[]; error?: string; seconds: number }[] = [];
for (const m of modules) {
  const started = Date.now();
  process.stdout.write(`\n== ${m} ==\n`);
  try {
    const mod = (await import(join(here, `${m}.bench.ts`))) as { run: () => Promise<BenchOutput[]> };
    const results = await mod.run();
    for (const r of results) {
      if ('kind' in r) {
        process.stdout.write(
          `${r.met ? 'MET ' : 'MISS'}  ${r.name}: ${r.value} ${r.unit} (goal ${r.goal})${r.baselineName ? `; ${r.baselineName}: ${r.baselineValue} ${r.unit}` : ''}\n`,
        );
      } else {
        process.stdout.write(
          `${r.met ? 'MET ' : 'MISS'}  ${r.name}: ${r.opsPerSec} ops/s vs ${r.baselineName}: ${r.baselineOpsPerSec} ops/s = ${r.ratio}x (goal ${r.goal})\n`,
        );
      }
    }
    sections.push({ module: m, results, seconds: (Date.now() - started) / 1000 });
  } catch (err) {
    const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stdout.write(`FAILED: ${msg}\n`);
    sections.push({
      module: m,
      results: [],
      error: msg.split('\n')[0]!,
      seconds: (Date.now() - started) / 1000,
    });
  }
}

function fmt(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : String(Math.round(n * 1000) / 1000);
}

const commit = (() => {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();
const header = [
  '# Benchmarks',
  '',
  'Written by `npm run bench` (bench/run.ts): every figure is measured beside its baseline in the',
  'same run on the same machine, so the ratio is what carries over between machines. No timing',
  'goal lives in the unit tests.',
  '',
  `Last run: ${new Date().toISOString()} · commit ${commit} · Node ${process.version} · ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'} · ${Math.round(totalmem() / 2 ** 30)} GiB`,
  '',
  'Command: `npm run bench` (or `npm run bench -- <module> …` for some of them).',
  '',
];
const previous = (() => {
  try {
    return readFileSync(join(here, '../docs/benchmarks.md'), 'utf8');
  } catch {
    return '';
  }
})();
const body: string[] = [];
const ran = new Set(sections.map((s) => s.module));
for (const s of sections) {
  body.push(`## ${s.module} (bench/${s.module}.bench.ts, ${s.seconds.toFixed(0)} s)`, '');
  if (s.error) {
    body.push(`Failed: \`${s.error}\``, '');
    continue;
  }
  const ratios = s.results.filter((r) => !('kind' in r));
  const figures = s.results.filter((r) => 'kind' in r);
  if (ratios.length > 0) {
    body.push(
      '| measured | ops/s | baseline | ops/s | ratio | goal | met |',
      '| --- | ---: | --- | ---: | ---: | --- | --- |',
    );
    for (const r of ratios) {
      if ('kind' in r) continue;
      body.push(
        `| ${r.name} | ${fmt(r.opsPerSec)} | ${r.baselineName} | ${fmt(r.baselineOpsPerSec)} | ${r.ratio}× | ${r.goal} | ${r.met ? 'yes' : '**no**'} |`,
      );
    }
    body.push('');
  }
  if (figures.length > 0) {
    body.push(
      '| measured | value | goal | met | baseline | note |',
      '| --- | ---: | --- | --- | --- | --- |',
    );
    for (const r of figures) {
      if (!('kind' in r)) continue;
      const base = r.baselineName ? `${r.baselineName}: ${fmt(r.baselineValue ?? 0)} ${r.unit}` : '';
      body.push(
        `| ${r.name} | ${fmt(r.value)} ${r.unit} | ${r.goal} | ${r.met ? 'yes' : '**no**'} | ${base} | ${r.note ?? ''} |`,
      );
    }
    body.push('');
  }
}
// Keep sections of modules not run this time (partial runs), from the previous file.
const previousBody = previous.includes('<!-- notes -->')
  ? previous.slice(0, previous.indexOf('<!-- notes -->'))
  : previous;
for (const m of previousBody.matchAll(/^## (\S+) \(bench\/[\s\S]*?(?=^## |$(?![\s\S]))/gm)) {
  if (!ran.has(m[1]!)) body.push(m[0].trimEnd(), '');
}
const notes = previous.includes('<!-- notes -->')
  ? previous.slice(previous.indexOf('<!-- notes -->'))
  : '<!-- notes -->\n';
writeFileSync(join(here, '../docs/benchmarks.md'), `${header.join('\n')}\n${body.join('\n')}\n${notes}`);
process.stdout.write('\nwrote docs/benchmarks.md\n');
