import type { Field, MapView, YamlReader } from './yaml-reader.js';

/** The only `apiVersion` this broker reads. */
export const CONFIG_API_VERSION = 'spiffe-broker.dev/v1';

/** The `kind`s this broker reads. */
export type ConfigKind = 'Allowlist' | 'BrokerConfig';

/**
 * Reads a document's top-level mapping and checks `apiVersion` and `kind`. Returns the view even
 * when the header is wrong so the body is still checked (every issue is reported at once).
 */
export function readHeader(
  reader: YamlReader,
  root: Field,
  kind: ConfigKind,
  bodyKeys: readonly string[],
): MapView | undefined {
  if (reader.isNull(root)) {
    reader.report(root, `the file is empty; expected a ${kind} document`);
    return undefined;
  }
  const top = reader.map(root, ['apiVersion', 'kind', ...bodyKeys], `a ${kind} mapping`);
  if (!top) return undefined;
  const api = top.require('apiVersion');
  if (api) {
    const v = reader.string(api);
    if (v !== undefined && v !== CONFIG_API_VERSION) {
      reader.report(api, `apiVersion must be ${CONFIG_API_VERSION}`);
    }
  }
  const k = top.require('kind');
  if (k) {
    const v = reader.string(k);
    if (v !== undefined && v !== kind) {
      const known = v === 'Allowlist' || v === 'BrokerConfig';
      reader.report(
        k,
        known
          ? `kind must be ${kind} here, got ${v}`
          : `unknown kind ${JSON.stringify(v)}: expected Allowlist or BrokerConfig`,
      );
    }
  }
  return top;
}
