import { readFileSync } from 'node:fs';
import { parser } from '@prometheus-io/lezer-promql';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { METRIC_DEFS } from '../../../src/adapters/metrics/index.js';

const dashboard = JSON.parse(
  readFileSync(new URL('../../../deploy/observability/grafana-dashboard.json', import.meta.url), 'utf8'),
) as { panels: Panel[]; templating: { list: { name: string; query?: unknown; definition?: string }[] } };
const rules = parseYaml(
  readFileSync(new URL('../../../deploy/observability/prometheus-rules.yaml', import.meta.url), 'utf8'),
) as { kind: string; spec: { groups: { name: string; rules: Rule[] }[] } };

interface Panel {
  type: string;
  title: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}
interface Rule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];
const defs = new Map(METRIC_DEFS.map((d) => [d.name, d]));

/** Grafana variables are not PromQL: give them values PromQL accepts. */
function substituteGrafanaVariables(expr: string): string {
  return expr.replace(/\$__\w+/g, '5m').replace(/\$\{?\w+\}?/g, 'x');
}

/** Parses with Prometheus' own grammar: the metric names selected, and whether it had syntax errors. */
function analyse(expr: string): { names: string[]; errors: number } {
  const text = substituteGrafanaVariables(expr);
  const names: string[] = [];
  let errors = 0;
  parser.parse(text).iterate({
    enter(node) {
      if (node.type.isError) errors++;
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') {
        names.push(text.slice(node.from, node.to));
      }
    },
  });
  return { names, errors };
}

/** True when `name` is defined in names.ts, or is a series of a defined histogram. */
function exists(name: string): boolean {
  if (defs.has(name)) return true;
  const suffix = HISTOGRAM_SUFFIXES.find((s) => name.endsWith(s));
  return suffix !== undefined && defs.get(name.slice(0, -suffix.length))?.type === 'histogram';
}

const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
const panelExprs = panels.flatMap((p) => (p.targets ?? []).map((t) => [p.title, t.expr ?? ''] as const));
const alerts = rules.spec.groups.flatMap((g) => g.rules);

describe('deploy/observability', () => {
  it('has panels and alerts to check (guards the scan)', () => {
    expect(panels.length).toBeGreaterThan(10);
    expect(alerts.length).toBeGreaterThan(5);
    expect(rules.kind).toBe('PrometheusRule');
  });

  it.each(panelExprs)(
    'dashboard panel "%s" queries valid PromQL over defined metrics: %s',
    (_title, expr) => {
      const { names, errors } = analyse(expr);
      expect(errors).toBe(0);
      expect(names.length).toBeGreaterThan(0);
      expect(names.filter((n) => !exists(n))).toEqual([]);
    },
  );

  it.each(alerts.map((r) => [r.alert, r] as const))(
    'alert %s is valid PromQL over defined metrics',
    (_name, rule) => {
      const { names, errors } = analyse(rule.expr);
      expect(errors).toBe(0);
      expect(names.length).toBeGreaterThan(0);
      expect(names.filter((n) => !exists(n))).toEqual([]);
      expect(['warning', 'critical']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary).toBeTruthy();
      expect(rule.annotations?.description).toBeTruthy();
    },
  );

  it('templating queries use defined metrics', () => {
    for (const v of dashboard.templating.list) {
      for (const m of (v.definition ?? '').matchAll(/\bspiffe_broker_[a-z0-9_]+/g))
        expect(exists(m[0])).toBe(true);
    }
  });

  it('alerts on every condition the broker promises', () => {
    const exprs = alerts.map((r) => r.expr).join('\n');
    expect(exprs).toMatch(/spiffe_broker_peer_state\{state="STALE"\}/);
    expect(exprs).toMatch(/spiffe_broker_peer_state\{state="FAILING"\}/);
    expect(exprs).toMatch(
      /spiffe_broker_authority_expiry_seconds[\s\S]*2 \* spiffe_broker_bundle_refresh_hint_seconds/,
    );
    expect(exprs).toContain('spiffe_broker_drift_bundles');
    expect(exprs).toContain('spiffe_broker_mtls_probe_success');
    expect(exprs).toContain('spiffe_broker_spire_sync_total');
  });

  it('the checker itself rejects unknown names and bad syntax', () => {
    expect(exists('spiffe_broker_propagation_seconds_bucket')).toBe(true);
    expect(exists('spiffe_broker_bundle_sequence_count')).toBe(false);
    expect(exists('spiffe_broker_nope')).toBe(false);
    expect(analyse('rate(spiffe_broker_verify_total[5m]').errors).toBeGreaterThan(0);
    expect(
      analyse('sum by (le) (rate(spiffe_broker_verify_duration_seconds_bucket{kind="x"}[$__rate_interval]))')
        .names,
    ).toEqual(['spiffe_broker_verify_duration_seconds_bucket']);
  });
});
