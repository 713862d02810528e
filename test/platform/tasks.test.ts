import { describe, expect, it } from 'vitest';
import { RuntimeError } from '../../src/errors.js';
import { runTasks, type Task } from '../../src/platform/tasks.js';

/** A task that runs until its signal aborts, recording when it stopped. */
function longRunning(name: string, log: string[], stopDelayMs = 0): Task {
  return {
    name,
    run: (signal) =>
      new Promise<void>((resolve) => {
        signal.addEventListener(
          'abort',
          () =>
            setTimeout(() => {
              log.push(`${name} stopped`);
              resolve();
            }, stopDelayMs),
          { once: true },
        );
      }),
  };
}

function failing(name: string, error: unknown, afterTicks = 1): Task {
  return {
    name,
    run: async () => {
      for (let i = 0; i < afterTicks; i++) await Promise.resolve();
      throw error;
    },
  };
}

describe('runTasks', () => {
  it('a failing task aborts the others, waits for every one to return, and rethrows its coded error', async () => {
    const log: string[] = [];
    const failure = new RuntimeError('ERR_LISTEN', 'admin API cannot listen: EADDRINUSE');
    const heard: string[] = [];
    const p = runTasks(
      [longRunning('federation', log, 20), failing('admin API', failure), longRunning('SPIRE sync', log, 5)],
      new AbortController().signal,
      (f) => heard.push(f.message),
    );
    await expect(p).rejects.toBe(failure);
    // Both others had stopped before runTasks returned: nothing keeps running after cleanup.
    expect(log.sort()).toEqual(['SPIRE sync stopped', 'federation stopped']);
    expect(heard).toEqual(['admin API: admin API cannot listen: EADDRINUSE']);
  });

  it('reports only the first failure; later ones (and abort errors) are not failures', async () => {
    const first = new Error('sync threw');
    const heard: string[] = [];
    const p = runTasks(
      [
        failing('SPIRE sync', first, 1),
        failing('allowlist watcher', new Error('watcher threw'), 5),
        {
          name: 'endpoint',
          run: (signal) =>
            new Promise((_, reject) =>
              signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
            ),
        },
      ],
      new AbortController().signal,
      (f) => heard.push(f.task),
    );
    await expect(p).rejects.toBe(first);
    expect(heard).toEqual(['SPIRE sync']);
  });

  it('resolves when the caller aborts, after every task returned', async () => {
    const log: string[] = [];
    const stop = new AbortController();
    const p = runTasks([longRunning('a', log, 10), longRunning('b', log)], stop.signal);
    stop.abort();
    await expect(p).resolves.toBeUndefined();
    expect(log.sort()).toEqual(['a stopped', 'b stopped']);
  });

  it('a task that returns early (nothing configured) does not stop the others', async () => {
    const log: string[] = [];
    const stop = new AbortController();
    const p = runTasks([{ name: 'probe', run: async () => undefined }, longRunning('b', log)], stop.signal);
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual([]);
    stop.abort();
    await p;
    expect(log).toEqual(['b stopped']);
  });

  it('an error while stopping after the caller aborted is reported, not a failure of the run', async () => {
    const stop = new AbortController();
    const heard: string[] = [];
    const p = runTasks(
      [
        {
          name: 'endpoint',
          run: (signal) =>
            new Promise((_, reject) =>
              signal.addEventListener('abort', () => reject(new Error('close failed')), { once: true }),
            ),
        },
      ],
      stop.signal,
      () => heard.push('failure'),
      (f) => heard.push(`shutdown: ${f.message}`),
    );
    stop.abort();
    await expect(p).resolves.toBeUndefined();
    expect(heard).toEqual(['shutdown: endpoint: close failed']);
  });
});
