#!/usr/bin/env -S node --max-semi-space-size=4 --no-memory-reducer
// The executable entry point: the only place that touches the real process.
import { processIo, runCli } from './index.js';

const controller = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => controller.abort(new Error(`received ${sig}`)));
}
runCli(process.argv.slice(2), processIo(controller.signal)).then(
  (code) => {
    process.exitCode = code;
    // A failed daemon has stopped every part it runs; should some handle still hold the event
    // loop, never linger half-alive: a supervisor must see the exit.
    if (code !== 0) setTimeout(() => process.exit(code), 3000).unref();
  },
  (err: unknown) => {
    process.stderr.write(
      `internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 70;
  },
);
