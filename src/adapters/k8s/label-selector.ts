import { K8sError } from '../../errors.js';

/**
 * Kubernetes label selectors in their string form (`env=prod,tier in (a,b),!legacy`), parsed and
 * matched locally — the ConfigMap sink watches every namespace and needs to know which stopped
 * matching, which a server-side filtered list cannot tell it after a restart. Pure.
 * @module
 */

/** One requirement of a selector. */
export type LabelRequirement =
  | { readonly op: 'exists' | 'not-exists'; readonly key: string }
  | { readonly op: 'in' | 'notin'; readonly key: string; readonly values: readonly string[] };

const KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

function bad(selector: string, why: string): K8sError {
  return new K8sError('ERR_K8S_CONFIG', `invalid label selector ${JSON.stringify(selector)}: ${why}`);
}

/** Splits on commas that are not inside `( … )`. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/**
 * Parses a label selector. The empty selector matches everything.
 * @throws K8sError `ERR_K8S_CONFIG` naming the bad part.
 */
export function parseLabelSelector(selector: string): LabelRequirement[] {
  const trimmed = selector.trim();
  if (trimmed === '') return [];
  return splitTop(trimmed).map((raw) => {
    const part = raw.trim();
    let m = /^!\s*(\S+)$/.exec(part);
    if (m) {
      if (!KEY.test(m[1]!)) throw bad(selector, `bad key ${m[1]}`);
      return { op: 'not-exists', key: m[1]! };
    }
    m = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(part);
    if (m) {
      const values = m[3]!.split(',').map((v) => v.trim());
      if (!KEY.test(m[1]!)) throw bad(selector, `bad key ${m[1]}`);
      if (values.some((v) => !VALUE.test(v))) throw bad(selector, `bad value in ${part}`);
      return { op: m[2] as 'in' | 'notin', key: m[1]!, values };
    }
    m = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(part);
    if (m) {
      if (!KEY.test(m[1]!)) throw bad(selector, `bad key ${m[1]}`);
      if (!VALUE.test(m[3]!)) throw bad(selector, `bad value ${m[3]}`);
      return { op: m[2] === '!=' ? 'notin' : 'in', key: m[1]!, values: [m[3]!] };
    }
    if (KEY.test(part)) return { op: 'exists', key: part };
    throw bad(selector, `cannot read ${JSON.stringify(part)}`);
  });
}

/** True when `labels` satisfy every requirement (Kubernetes semantics: `notin`/`!=` match absent keys). */
export function matchesLabels(
  requirements: readonly LabelRequirement[],
  labels: Readonly<Record<string, string>> | undefined,
): boolean {
  const l = labels ?? {};
  return requirements.every((r) => {
    const has = Object.hasOwn(l, r.key);
    if (r.op === 'exists') return has;
    if (r.op === 'not-exists') return !has;
    if (r.op === 'in') return has && r.values.includes(l[r.key]!);
    if (r.op === 'notin') return !has || !r.values.includes(l[r.key]!);
    return false;
  });
}
