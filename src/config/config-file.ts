import { isMap, isScalar, parseDocument } from 'yaml';
import { type AllowlistParseOptions, parseAllowlist } from './allowlist.js';
import { parseBrokerConfig } from './broker-config.js';
import type { ConfigKind } from './header.js';
import type { Allowlist, BrokerConfig } from './types.js';

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
  if (detectConfigKind(text) === 'BrokerConfig') {
    return { kind: 'BrokerConfig', config: parseBrokerConfig(text) };
  }
  return { kind: 'Allowlist', allowlist: parseAllowlist(text, allowlistOptions) };
}
