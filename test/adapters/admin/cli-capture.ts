import type { AdminTarget, HttpGet } from '../../../src/adapters/admin/index.js';
import type { AdminCliIo } from '../../../src/cli/status-command.js';

/** Runs a CLI command at 2030-01-01T00:00:30Z with captured output and a fake admin API answering `answer(target, path)`. */
export async function capture(
  command: (args: string[], io: AdminCliIo) => Promise<number>,
  args: string[],
  answer?: (target: AdminTarget, path: string) => { status: number; body: string },
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string; calls: { target: AdminTarget; path: string }[] }> {
  let stdout = '';
  let stderr = '';
  const calls: { target: AdminTarget; path: string }[] = [];
  const httpGet: HttpGet | undefined = answer
    ? async (target, path) => {
        calls.push({ target, path });
        return answer(target, path);
      }
    : undefined;
  const io: AdminCliIo = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    readFile: async () => {
      throw new Error('no files');
    },
    now: () => Date.parse('2030-01-01T00:00:30.000Z'),
    env,
    signal: new AbortController().signal,
    ...(httpGet ? { httpGet } : {}),
  };
  const code = await command(args, io);
  return { code, stdout, stderr, calls };
}
