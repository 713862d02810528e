/** Structured logging as an injected capability; every method may be a no-op. */
export interface Logger {
  debug(message: string, fields?: Readonly<Record<string, unknown>>): void;
  info(message: string, fields?: Readonly<Record<string, unknown>>): void;
  warn(message: string, fields?: Readonly<Record<string, unknown>>): void;
  error(message: string, fields?: Readonly<Record<string, unknown>>): void;
}

/** Drops everything: the default, so library code is silent unless given a logger. */
export const nullLogger: Logger = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LEVELS;

/**
 * One JSON object per line: `{"time","level","msg",...fields}`. bigint fields are written as
 * decimal strings, Errors as their message and code.
 */
export function jsonLogger(
  write: (line: string) => void,
  opts: { level?: LogLevel; now?: () => number; base?: Record<string, unknown> } = {},
): Logger {
  const min = LEVELS[opts.level ?? 'info'];
  const now = opts.now ?? Date.now;
  const emit = (level: LogLevel, msg: string, fields?: Readonly<Record<string, unknown>>): void => {
    if (LEVELS[level] < min) return;
    const record = { time: new Date(now()).toISOString(), level, msg, ...opts.base, ...fields };
    write(
      `${JSON.stringify(record, (_k, v: unknown) => {
        if (typeof v === 'bigint') return v.toString();
        if (v instanceof Error)
          return {
            message: v.message,
            ...((v as { code?: string }).code ? { code: (v as { code?: string }).code } : {}),
          };
        return v;
      })}\n`,
    );
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
