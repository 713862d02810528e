import { isOutputFormat, OUTPUT_FORMATS, type OutputFormat } from '../../core/bundle/outputs.js';
import type { Field, MapView, YamlReader } from './yaml-reader.js';

/**
 * The `outputs:` section of broker.yaml: the accepted bundles written for consumers that read
 * trust from files (docs/configuration.md#outputs).
 *
 * ```yaml
 * outputs:
 *   files:
 *     dir: /var/run/spiffe-broker/bundles
 *     formats: [grpc-bundle-map, envoy-bundle-map, pem, jwks]
 *     includeLocal: true
 * ```
 * @module
 */

/** `outputs.files`: the file outputs (`FileOutputSink`). */
export interface FileOutputsConfig {
  /** Directory the files are written to; the broker owns the files it names there. */
  readonly dir: string;
  /** Formats written, each at most once; at least one. */
  readonly formats: readonly OutputFormat[];
  /** Also write the local trust domain's bundle into every output. Default false. */
  readonly includeLocal: boolean;
}

/** `outputs:`: where the accepted bundles are written besides SPIRE and the bundle endpoint. */
export interface OutputsConfig {
  /** Absent: no file outputs. */
  readonly files?: FileOutputsConfig;
}

function opt(reader: YamlReader, m: MapView, key: string): Field | undefined {
  const f = m.get(key);
  return f && !reader.isNull(f) ? f : undefined;
}

/** Reads `outputs:` (a present, non-null field); undefined after reporting an issue. */
export function readOutputs(
  reader: YamlReader,
  f: Field,
  stateDir: string | undefined,
): OutputsConfig | undefined {
  const m = reader.map(f, ['files']);
  if (!m) return undefined;
  const filesF = opt(reader, m, 'files');
  if (!filesF) return {};
  const files = readFileOutputs(reader, filesF);
  if (!files) return undefined;
  const problem = stateDir === undefined ? undefined : outputDirProblem(files.dir, stateDir);
  if (problem !== undefined) {
    reader.report(filesF, problem);
    return undefined;
  }
  return { files };
}

function normalizeDir(path: string): string {
  const parts: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  return `/${parts.join('/')}`;
}

/**
 * Why `dir` cannot hold file outputs next to the state directory, or undefined: the output
 * directory must be neither the state directory nor inside or around it, since the file sink
 * writes and removes files by name there (state files are `<trust domain>.bundle.json` too).
 * Relative paths are compared as written.
 */
export function outputDirProblem(dir: string, stateDir: string): string | undefined {
  const a = normalizeDir(dir);
  const b = normalizeDir(stateDir);
  const within = (x: string, y: string) => x === y || x.startsWith(y === '/' ? '/' : `${y}/`);
  return within(a, b) || within(b, a)
    ? `dir ${JSON.stringify(dir)} overlaps stateDir ${JSON.stringify(stateDir)}: the outputs need a directory of their own`
    : undefined;
}

function readFileOutputs(reader: YamlReader, f: Field): FileOutputsConfig | undefined {
  const m = reader.map(f, ['dir', 'formats', 'includeLocal']);
  if (!m) return undefined;
  const dirF = m.require('dir');
  const dir = dirF ? reader.string(dirF, 'a directory path') : undefined;
  const formatsF = m.require('formats');
  const items = formatsF
    ? reader.seq(formatsF, `a list of formats (${OUTPUT_FORMATS.join(', ')})`)
    : undefined;
  let ok = dir !== undefined && items !== undefined;
  const formats: OutputFormat[] = [];
  for (const item of items ?? []) {
    const v = reader.oneOf(item, OUTPUT_FORMATS);
    if (v === undefined || !isOutputFormat(v)) {
      ok = false;
    } else if (formats.includes(v)) {
      reader.report(item, `format ${v} is listed twice`);
      ok = false;
    } else formats.push(v);
  }
  if (items !== undefined && items.length === 0 && formatsF) {
    reader.report(formatsF, 'must list at least one format');
    ok = false;
  }
  const ilF = opt(reader, m, 'includeLocal');
  const includeLocal = ilF ? reader.boolean(ilF) : false;
  if (!ok || includeLocal === undefined || dir === undefined) return undefined;
  return { dir, formats, includeLocal };
}
