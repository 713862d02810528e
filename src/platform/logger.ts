import { untrustedText } from '../untrusted-text.js';

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

/** Longest string field value written by {@link jsonLogger}, characters (before escaping). */
export const MAX_LOG_FIELD_CHARS = 2048;

/**
 * One JSON object per line: `{"time","level","msg",...fields}`. bigint fields are written as
 * decimal strings, Errors as their message and code. Every string value (Error messages included)
 * goes through {@link untrustedText}: at most {@link MAX_LOG_FIELD_CHARS} characters, control and
 * bidi characters escaped — fields often quote what a peer sent, and a peer must not be able to
 * fill the disk or forge lines through them.
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
        if (typeof v === 'string') return untrustedText(v, MAX_LOG_FIELD_CHARS);
        if (typeof v === 'bigint') return v.toString();
        if (v instanceof Error)
          return {
            message: untrustedText(v.message, MAX_LOG_FIELD_CHARS),
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
