import { ConfigError } from '../../errors.js';

/** Milliseconds per duration unit accepted by {@link parseDuration}. */
const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;

/**
 * Parses a configuration duration into milliseconds.
 *
 * Accepted forms: a non-negative number of **seconds** (YAML `30`, `0.25`), or a string of one or
 * more `<number><unit>` parts with unit `ms`, `s`, `m` or `h` (`"250ms"`, `"5m"`, `"1h30m"`), or
 * a string of plain digits (seconds). The result must be a whole number of milliseconds.
 *
 * @example
 * parseDuration('5m');    // 300000
 * parseDuration(2);       // 2000
 * parseDuration('1m30s'); // 90000
 * @throws ConfigError `ERR_CONFIG_SCHEMA` naming what is wrong.
 */
export function parseDuration(value: string | number): number {
  let ms: number;
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) {
      throw durationError(`duration must be a non-negative number of seconds, got ${value}`);
    }
    ms = value * 1000;
  } else if (/^\d+$/.test(value)) {
    ms = Number(value) * 1000;
  } else {
    if (value.length === 0) throw durationError('duration is empty');
    ms = 0;
    DURATION_PART.lastIndex = 0;
    while (DURATION_PART.lastIndex < value.length) {
      const m = DURATION_PART.exec(value);
      if (!m) {
        throw durationError(
          `invalid duration ${JSON.stringify(value)}: use e.g. "250ms", "30s", "5m", "1h30m" or a number of seconds`,
        );
      }
      ms += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    }
  }
  // Floating point: "0.1s" is 100.00000000000001 ms before rounding.
  const rounded = Math.round(ms);
  if (Math.abs(rounded - ms) > 1e-6 || !Number.isSafeInteger(rounded)) {
    throw durationError(`duration ${JSON.stringify(value)} is not a whole number of milliseconds`);
  }
  return rounded;
}

const SIZE_UNITS: Readonly<Record<string, number>> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

/**
 * Parses a byte size: a non-negative integer, or a string `<integer><unit>` with unit `B`, `KiB`,
 * `MiB` or `GiB` (binary multiples only, so `1MiB` is exactly 1 048 576).
 * @throws ConfigError `ERR_CONFIG_SCHEMA`
 */
export function parseByteSize(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw sizeError(`size must be a non-negative integer number of bytes, got ${value}`);
    }
    return value;
  }
  const m = /^(\d+)\s*(B|KiB|MiB|GiB)?$/.exec(value);
  if (!m) {
    throw sizeError(`invalid size ${JSON.stringify(value)}: use bytes or e.g. "64KiB", "1MiB"`);
  }
  const n = Number(m[1]) * SIZE_UNITS[m[2] ?? 'B']!;
  if (!Number.isSafeInteger(n)) throw sizeError(`size ${JSON.stringify(value)} is too large`);
  return n;
}

function durationError(message: string): ConfigError {
  return new ConfigError('ERR_CONFIG_SCHEMA', message);
}

function sizeError(message: string): ConfigError {
  return new ConfigError('ERR_CONFIG_SCHEMA', message);
}
