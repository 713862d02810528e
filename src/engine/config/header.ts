import { isMap, isScalar } from 'yaml';
import type { Field, MapView, YamlReader } from './yaml-reader.js';

/** The only `apiVersion` this broker reads. */
export const CONFIG_API_VERSION = 'spiffe-broker.dev/v1';

/** The `kind`s this broker reads. */
export type ConfigKind = 'Allowlist' | 'BrokerConfig';

/** "an Allowlist", "a BrokerConfig": the kind with its article. */
function withArticle(kind: string): string {
  return `${/^[AEIOU]/i.test(kind) ? 'an' : 'a'} ${kind}`;
}

/**
 * What a document that is not a spiffe-broker configuration looks like, when that can be told:
 * the formats operators have at hand next to a broker config. Empty when nothing is recognised.
 */
function lookalike(node: unknown): string {
  if (isScalar(node) && typeof node.value === 'string') {
    // HCL (SPIRE's server.conf / agent.conf) reads as one multi-line YAML scalar.
    if (/^\s*(server|agent|plugins)\s*\{/m.test(node.value)) {
      return '; it looks like a SPIRE server or agent configuration (HCL)';
    }
    if (node.value.includes('-----BEGIN ')) return '; it looks like a PEM file';
    return '';
  }
  if (isMap(node)) {
    if (node.has('keys')) return '; it looks like a SPIFFE bundle (a JWK set)';
    if (node.has('trust_domains')) return '; it looks like a SPIFFE Bundle Map';
    if (node.has('server') || node.has('plugins')) return '; it looks like a SPIRE configuration';
    if (node.has('apiVersion') && node.has('metadata')) return '; it looks like a Kubernetes manifest';
  }
  return '';
}

/** "an Allowlist", "an Allowlist or a BrokerConfig". */
function kindsText(kinds: readonly ConfigKind[]): string {
  return kinds.map(withArticle).join(' or ');
}

/** "this is not an Allowlist", "this is neither an Allowlist nor a BrokerConfig". */
function isNot(kinds: readonly ConfigKind[]): string {
  return kinds.length === 2
    ? `this is neither ${withArticle(kinds[0]!)} nor ${withArticle(kinds[1]!)}`
    : `this is not ${kindsText(kinds)}`;
}

/**
 * Reports, as one issue, a document that is not a configuration of one of `kinds` at all: empty,
 * not a mapping, with neither `apiVersion` nor `kind`, or of another kind — saying what it is not
 * and, when it can tell, what it looks like (a SPIRE server.conf, a SPIFFE bundle, …). Returns
 * true when it reported, so callers skip the body (a list of unknown and missing keys helps nobody
 * who gave the wrong file).
 */
export function reportNotAConfig(reader: YamlReader, root: Field, kinds: readonly ConfigKind[]): boolean {
  const kindList = kinds.join(' or ');
  const expected = `a YAML mapping with apiVersion: ${CONFIG_API_VERSION} and kind: ${kindList}`;
  if (reader.isNull(root)) {
    reader.report(root, `the file is empty; expected ${kindsText(kinds)} (${expected})`);
    return true;
  }
  const node = root.node;
  if (!isMap(node)) {
    reader.report(root, `${isNot(kinds)}: expected ${expected}${lookalike(node)}`);
    return true;
  }
  if (!node.has('apiVersion') && !node.has('kind')) {
    reader.report(
      root,
      `${isNot(kinds)}: it has neither apiVersion nor kind (expected apiVersion: ${CONFIG_API_VERSION} and kind: ${kindList})${lookalike(node)}`,
    );
    return true;
  }
  const kindNode = node.get('kind', true);
  const v = isScalar(kindNode) && typeof kindNode.value === 'string' ? kindNode.value : undefined;
  if (v !== undefined && !(kinds as readonly string[]).includes(v)) {
    const apiNode = node.get('apiVersion', true);
    if (isScalar(apiNode) && apiNode.value !== CONFIG_API_VERSION) {
      reader.report(
        { node: apiNode, path: '/apiVersion', offset: 0 },
        `apiVersion must be ${CONFIG_API_VERSION}`,
      );
    }
    const known = v === 'Allowlist' || v === 'BrokerConfig';
    reader.report(
      { node: kindNode as Field['node'], path: '/kind', offset: 0 },
      known
        ? `kind must be ${kindList} here: this file is ${withArticle(v)}, not ${kindsText(kinds)}`
        : `unknown kind ${JSON.stringify(v)}: this is not a spiffe-broker configuration (expected kind: Allowlist or BrokerConfig)${lookalike(node)}`,
    );
    return true;
  }
  return false;
}

/**
 * Reads a document's top-level mapping and checks `apiVersion` and `kind`. Returns the view even
 * when only `apiVersion` is wrong so the body is still checked (every issue is reported at once);
 * returns undefined after one issue for a document that is not a `kind` configuration at all
 * ({@link reportNotAConfig}).
 */
export function readHeader(
  reader: YamlReader,
  root: Field,
  kind: ConfigKind,
  bodyKeys: readonly string[],
): MapView | undefined {
  if (reportNotAConfig(reader, root, [kind])) return undefined;
  const top = reader.map(root, ['apiVersion', 'kind', ...bodyKeys], `a ${kind} mapping`);
  if (!top) return undefined;
  const api = top.require('apiVersion');
  if (api) {
    const a = reader.string(api);
    if (a !== undefined && a !== CONFIG_API_VERSION) {
      reader.report(api, `apiVersion must be ${CONFIG_API_VERSION}`);
    }
  }
  const k = top.require('kind');
  if (k) reader.string(k);
  return top;
}
