import { setMaxListeners } from 'node:events';
import { isAbort } from './clock.js';

/**
 * Running the long-lived parts of a process together (STYLE.md §6; SPIRE's `util.RunTasks`): each
 * task gets a child signal; the first task to fail aborts all the others, waits until every one
 * has returned, and then rethrows that first error — so no part keeps running half-dead after
 * another failed (a listener that could not bind, a sync that threw), and nothing runs after the
 * caller's cleanup.
 * @module
 */

/** One long-running part: runs until `signal` aborts, or fails. Returning early is allowed. */
export interface Task {
  /** For error messages and logs. */
  readonly name: string;
  run(signal: AbortSignal): Promise<void>;
}

/** The first failure of a task group, naming the task; `cause` is the task's own error. */
export class TaskFailure extends Error {
  override readonly name = 'TaskFailure';
  constructor(
    readonly task: string,
    readonly error: unknown,
  ) {
    super(`${task}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/**
 * Runs `tasks` until `signal` aborts (then resolves once all returned) or one fails (then the
 * others are aborted and awaited, and the first failure is rethrown unchanged — a coded
 * BrokerError keeps its code). Errors that are only the abort itself are not failures, nor are
 * errors thrown while stopping after the caller aborted (they go to `onShutdownError`).
 * @param onFailure hears the first failure at once, before the others are awaited (e.g. to log
 *   it with its code while the rest shut down).
 */
export async function runTasks(
  tasks: readonly Task[],
  signal: AbortSignal,
  onFailure?: (failure: TaskFailure) => void,
  onShutdownError?: (failure: TaskFailure) => void,
): Promise<void> {
  const group = new AbortController();
  // Every task (and what it runs) listens on the group's signal: not a leak, so no warning.
  setMaxListeners(Math.max(10, tasks.length * 4), group.signal);
  const stop = (): void => group.abort(signal.reason);
  if (signal.aborted) stop();
  else signal.addEventListener('abort', stop, { once: true });
  let first: TaskFailure | undefined;
  try {
    await Promise.all(
      tasks.map(async (task) => {
        try {
          await task.run(group.signal);
        } catch (err) {
          if (group.signal.aborted && isAbort(err, group.signal)) return;
          // The caller asked everything to stop: an error while stopping is reported, not a
          // failure of the run (a stop must end in a clean exit).
          if (signal.aborted && !first) {
            onShutdownError?.(new TaskFailure(task.name, err));
            return;
          }
          if (!first) {
            first = new TaskFailure(task.name, err);
            onFailure?.(first);
            group.abort(first);
          }
        }
      }),
    );
  } finally {
    signal.removeEventListener('abort', stop);
  }
  if (first) throw first.error;
}
