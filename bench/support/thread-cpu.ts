/**
 * Per-thread CPU of a process from /proc, for the benches' debug output (which thread of the
 * broker — JavaScript, V8's GC helpers, libuv's pool — spent a window's CPU).
 * @module
 */
import { readdir, readFile } from 'node:fs/promises';

export interface ThreadCpu {
  readonly name: string;
  /** utime + stime, clock ticks (1/100 s). */
  readonly ticks: number;
  /** stime alone, clock ticks. */
  readonly sys: number;
}

/** Per-thread CPU of `pid` by thread id. */
export async function threadCpu(pid: number): Promise<Map<string, ThreadCpu>> {
  const out = new Map<string, ThreadCpu>();
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
    const m = /^\d+ \((.*)\) (.*)$/.exec(stat.trim());
    if (!m) continue;
    const f = m[2]!.split(' ');
    out.set(tid, { name: m[1]!, ticks: Number(f[11]) + Number(f[12]), sys: Number(f[12]) });
  }
  return out;
}

/**
 * CPU ticks spent between two {@link threadCpu} readings of `pid`, summed per thread name (the
 * process's first thread as `main`), each with its system part as `<name> system`.
 */
export function threadCpuDelta(
  pid: number,
  before: ReadonlyMap<string, ThreadCpu>,
  after: ReadonlyMap<string, ThreadCpu>,
): Record<string, number> {
  const byName: Record<string, number> = {};
  for (const [tid, t] of after) {
    const k = tid === String(pid) ? 'main' : t.name;
    byName[k] = (byName[k] ?? 0) + t.ticks - (before.get(tid)?.ticks ?? 0);
    byName[`${k} system`] = (byName[`${k} system`] ?? 0) + t.sys - (before.get(tid)?.sys ?? 0);
  }
  return byName;
}
