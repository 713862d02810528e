import { isMap, isScalar, parseDocument } from 'yaml';
import { type AllowlistParseOptions, parseAllowlist } from './allowlist.js';
import { parseBrokerConfig } from './broker-config.js';
import { ConfigValidationError } from './config-error.js';
import { type ConfigKind, reportNotAConfig } from './header.js';
import type { Allowlist, BrokerConfig } from './types.js';
import { loadYaml } from './yaml-reader.js';

/** Either kind of configuration file, parsed. */
export type ParsedConfigFile =
  | { readonly kind: 'Allowlist'; readonly allowlist: Allowlist }
  | { readonly kind: 'BrokerConfig'; readonly config: BrokerConfig };

/**
 * The `kind` a YAML document declares at its top level, or undefined when it cannot be read
 * (syntax error, not a mapping, no string `kind`). Never throws.
 */
export function detectConfigKind(text: string): string | undefined {
  try {
    const doc = parseDocument(text, { prettyErrors: false });
    if (!isMap(doc.contents)) return undefined;
    const k = doc.contents.get('kind', true);
    return isScalar(k) && typeof k.value === 'string' ? k.value : undefined;
  } catch {
    return undefined;
  }
}

/** Kinds {@link parseConfigFile} dispatches on. */
export const CONFIG_KINDS: readonly ConfigKind[] = ['Allowlist', 'BrokerConfig'];

/**
 * Parses an allowlist or a broker config, deciding by its `kind`. A missing or unknown kind is
 * reported by the allowlist parser (kind: Allowlist is expected) so it has a position.
 * @throws ConfigValidationError
 */
export function parseConfigFile(
  text: string,
  allowlistOptions: AllowlistParseOptions = {},
): ParsedConfigFile {
  const kind = detectConfigKind(text);
  if (kind === 'BrokerConfig') {
    return { kind: 'BrokerConfig', config: parseBrokerConfig(text) };
  }
  if (kind !== 'Allowlist') {
    // Not recognisably either kind: say so for both, not as if an Allowlist had been asked for.
    const { reader, root } = loadYaml(text);
    if (reader.issues.length === 0 && reportNotAConfig(reader, root, CONFIG_KINDS)) {
      throw new ConfigValidationError('config file', reader.issues);
    }
  }
  return { kind: 'Allowlist', allowlist: parseAllowlist(text, allowlistOptions) };
}
