import { beforeEach, describe, expect, it } from 'vitest';
import {
  BrokerMetrics,
  createMetricsRegistry,
  PropagationTracker,
  type Registry,
  reasonLabel,
} from '../../../src/adapters/metrics/index.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { DAY, makePki, T0 } from '../../support/fixtures.js';

type Labels = Record<string, string>;

/** The value of one series at scrape time, or undefined when the series does not exist. */
async function value(registry: Registry, name: string, labels: Labels = {}): Promise<number | undefined> {
  const metrics = await registry.getMetricsAsJSON();
  for (const m of metrics) {
    for (const v of m.values as { metricName?: string; labels: Labels; value: number }[]) {
      const metricName = v.metricName ?? m.name;
      if (metricName !== name) continue;
      const match = Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want);
      if (match && Object.keys(v.labels).length === Object.keys(labels).length) {
        return v.value;
      }
    }
  }
  return undefined;
}

describe('BrokerMetrics', () => {
  let registry: Registry;
  let clock: FakeClock;

  beforeEach(() => {
    registry = createMetricsRegistry();
    clock = new FakeClock(T0);
  });

  it('refuses a missing registry or clock', () => {
    expect(() => new BrokerMetrics({ registry: {} as Registry, clock })).toThrow(TypeError);
    expect(() => new BrokerMetrics({ registry, clock: {} as FakeClock })).toThrow(TypeError);
  });

  it('exposes build info and the text format', async () => {
    const m = new BrokerMetrics({ registry, clock, build: { version: '1.2.3', nodeVersion: 'v20' } });
    expect(await value(registry, 'spiffe_broker_build_info', { version: '1.2.3', node_version: 'v20' })).toBe(
      1,
    );
    const { contentType, body } = await m.expose();
    expect(contentType).toMatch(/^text\/plain/);
    expect(body).toContain('# HELP spiffe_broker_build_info');
  });

  it('counts fetches with bounded reasons and records their duration', async () => {
    const m = new BrokerMetrics({ registry, clock });
    m.observeFetch({ peer: 'b.test', result: 'updated', durationSeconds: 0.2 });
    m.observeFetch({ peer: 'b.test', result: 'failed', reason: 'ERR_FETCH_TLS', durationSeconds: 0.01 });
    m.observeFetch({
      peer: 'b.test',
      result: 'failed',
      reason: 'connect ECONNREFUSED 1.2.3.4',
      durationSeconds: 1,
    });
    const total = 'spiffe_broker_bundle_fetch_total';
    expect(await value(registry, total, { peer: 'b.test', result: 'updated', reason: 'none' })).toBe(1);
    expect(await value(registry, total, { peer: 'b.test', result: 'failed', reason: 'ERR_FETCH_TLS' })).toBe(
      1,
    );
    expect(await value(registry, total, { peer: 'b.test', result: 'failed', reason: 'other' })).toBe(1);
    expect(
      await value(registry, 'spiffe_broker_bundle_fetch_duration_seconds_count', {
        peer: 'b.test',
        result: 'failed',
      }),
    ).toBe(2);
  });

  it('reasonLabel keeps codes and folds everything else', () => {
    expect(reasonLabel(undefined)).toBe('none');
    expect(reasonLabel('ERR_VERIFY_X509_EXPIRED')).toBe('ERR_VERIFY_X509_EXPIRED');
    expect(reasonLabel('err_lower')).toBe('other');
    expect(reasonLabel(`ERR_${'A'.repeat(100)}`)).toBe('other');
  });

  it('sets exactly one peer state to 1', async () => {
    const m = new BrokerMetrics({ registry, clock });
    m.setPeerState('b.test', 'PENDING');
    m.setPeerState('b.test', 'STALE');
    const state = 'spiffe_broker_peer_state';
    expect(await value(registry, state, { trust_domain: 'b.test', state: 'STALE' })).toBe(1);
    for (const s of ['PENDING', 'ACTIVE', 'FAILING', 'REVOKED']) {
      expect(await value(registry, state, { trust_domain: 'b.test', state: s })).toBe(0);
    }
    expect(() => m.setPeerState('b.test', 'BROKEN' as 'ACTIVE')).toThrow(TypeError);
  });

  it('computes bundle age at scrape time from the clock', async () => {
    const m = new BrokerMetrics({ registry, clock });
    m.setBundle('b.test', { sequence: 7n, refreshHintSeconds: 300, confirmedAt: clock.now() });
    await clock.advance(90_000);
    expect(await value(registry, 'spiffe_broker_bundle_age_seconds', { trust_domain: 'b.test' })).toBe(90);
    m.bundleConfirmed('b.test', clock.now());
    expect(await value(registry, 'spiffe_broker_bundle_age_seconds', { trust_domain: 'b.test' })).toBe(0);
    expect(await value(registry, 'spiffe_broker_bundle_sequence', { trust_domain: 'b.test' })).toBe(7);
    expect(
      await value(registry, 'spiffe_broker_bundle_refresh_hint_seconds', { trust_domain: 'b.test' }),
    ).toBe(300);
    m.bundleConfirmed('never-held.test', clock.now());
    expect(
      await value(registry, 'spiffe_broker_bundle_age_seconds', { trust_domain: 'never-held.test' }),
    ).toBeUndefined();
  });

  it('computes authority expiry at scrape time from the live bundles, so it stays true between changes', async () => {
    const b = await makePki('b.test', { caNotAfter: T0 + 2 * DAY });
    const store = new FederatedBundleStore();
    store.set(b.bundle);
    new BrokerMetrics({ registry, clock, bundles: () => store.bundles() });
    const name = 'spiffe_broker_authority_expiry_seconds';
    expect(await value(registry, name, { trust_domain: 'b.test', kind: 'x509' })).toBe(2 * 86_400);
    await clock.advance(DAY);
    expect(await value(registry, name, { trust_domain: 'b.test', kind: 'x509' })).toBe(86_400);
    await clock.advance(3 * DAY);
    expect(await value(registry, name, { trust_domain: 'b.test', kind: 'x509' })).toBe(-2 * 86_400);
    // JWT keys from a SPIFFE bundle carry no expiry: no jwt series.
    expect(await value(registry, name, { trust_domain: 'b.test', kind: 'jwt' })).toBeUndefined();
    store.delete('b.test');
    expect(await value(registry, name, { trust_domain: 'b.test', kind: 'x509' })).toBeUndefined();
  });

  it('removePeer drops every series of the peer, and only those', async () => {
    const m = new BrokerMetrics({ registry, clock });
    for (const peer of ['b.test', 'c.test']) {
      m.observeFetch({
        peer,
        result: 'refused',
        reason: 'ERR_POLICY_SEQUENCE_ROLLBACK',
        durationSeconds: 0.1,
      });
      m.setPeerState(peer, 'ACTIVE');
      m.setBundle(peer, { sequence: 1n, confirmedAt: clock.now() });
      m.setProbe({ peer, success: false, reason: 'ERR_MTLS_CONNECT', durationSeconds: 0.5 });
    }
    m.removePeer('b.test');
    const body = (await m.expose()).body;
    expect(body).not.toContain('"b.test"');
    expect(body).toContain('peer="c.test"');
    expect(body).toContain('trust_domain="c.test"');
  });

  it('records SPIRE syncs, writes, drift and conflicts', async () => {
    let drift = ['x.test', 'y.test'];
    const m = new BrokerMetrics({
      registry,
      clock,
      syncStatus: () => [{ name: 'main', drift, conflicts: ['z.test'] }],
    });
    const obs = m.spireSyncObserver();
    obs.synced?.('main', 'partial', 1500);
    obs.written?.('main', (await makePki('b.test')).bundle, {
      trustDomain: 'b.test',
      ok: false,
      code: 13,
      message: 'x',
    });
    obs.deleted?.('main', 'c.test', 'revoked', { trustDomain: 'c.test', ok: true, code: 0, message: '' });
    expect(
      await value(registry, 'spiffe_broker_spire_sync_total', { server: 'main', result: 'partial' }),
    ).toBe(1);
    expect(await value(registry, 'spiffe_broker_spire_sync_duration_seconds_sum', { server: 'main' })).toBe(
      1.5,
    );
    const writes = 'spiffe_broker_spire_bundle_write_total';
    expect(await value(registry, writes, { server: 'main', operation: 'set', result: 'error' })).toBe(1);
    expect(await value(registry, writes, { server: 'main', operation: 'delete', result: 'ok' })).toBe(1);
    expect(await value(registry, 'spiffe_broker_drift_bundles', { server: 'main' })).toBe(2);
    expect(await value(registry, 'spiffe_broker_conflict_bundles', { server: 'main' })).toBe(1);
    drift = [];
    expect(await value(registry, 'spiffe_broker_drift_bundles', { server: 'main' })).toBe(0);
  });

  it('records verifications, probes, held requests, allowlist reloads and audit failures', async () => {
    let reused = 40;
    const m = new BrokerMetrics({
      registry,
      clock,
      heldRequests: () => 12,
      fetchConnections: () => ({ idle: 900, max: 2500, reused }),
    });
    m.observeVerify({ trustDomain: 'b.test', kind: 'x509', result: 'ok', durationSeconds: 0.0001 });
    m.observeVerify({
      trustDomain: 'unknown',
      kind: 'jwt',
      result: 'refused',
      reason: 'ERR_VERIFY_NO_BUNDLE',
      durationSeconds: 0.00002,
    });
    m.setProbe({ peer: 'b.test', success: true, durationSeconds: 0.03 });
    m.allowlistReloaded({ ok: true, peers: 3 });
    m.allowlistReloaded({ ok: false });
    m.auditWriteFailed();
    const v = 'spiffe_broker_verify_total';
    expect(
      await value(registry, v, { trust_domain: 'b.test', kind: 'x509', result: 'ok', reason: 'none' }),
    ).toBe(1);
    expect(
      await value(registry, v, {
        trust_domain: 'unknown',
        kind: 'jwt',
        result: 'refused',
        reason: 'ERR_VERIFY_NO_BUNDLE',
      }),
    ).toBe(1);
    expect(await value(registry, 'spiffe_broker_verify_duration_seconds_count', { kind: 'jwt' })).toBe(1);
    expect(await value(registry, 'spiffe_broker_mtls_probe_success', { peer: 'b.test' })).toBe(1);
    expect(await value(registry, 'spiffe_broker_mtls_probe_duration_seconds', { peer: 'b.test' })).toBe(0.03);
    expect(
      await value(registry, 'spiffe_broker_mtls_probe_total', {
        peer: 'b.test',
        result: 'ok',
        reason: 'none',
      }),
    ).toBe(1);
    expect(await value(registry, 'spiffe_broker_endpoint_held_requests')).toBe(12);
    expect(await value(registry, 'spiffe_broker_fetch_idle_connections')).toBe(900);
    expect(await value(registry, 'spiffe_broker_fetch_idle_connections_max')).toBe(2500);
    expect(await value(registry, 'spiffe_broker_fetch_connection_reuses_total')).toBe(40);
    reused = 45; // read from the pool at every scrape
    expect(await value(registry, 'spiffe_broker_fetch_connection_reuses_total')).toBe(5 + 40);
    expect(await value(registry, 'spiffe_broker_allowlist_reload_success')).toBe(0);
    expect(await value(registry, 'spiffe_broker_allowlist_reload_timestamp_seconds')).toBe(T0 / 1000);
    expect(await value(registry, 'spiffe_broker_allowlist_peers')).toBe(3);
    expect(await value(registry, 'spiffe_broker_audit_write_failures_total')).toBe(1);
  });

  it('never records negative durations', async () => {
    const m = new BrokerMetrics({ registry, clock });
    m.observeSpireSync({ server: 's', result: 'ok', durationSeconds: -3 });
    m.observePropagation(Number.NaN);
    expect(await value(registry, 'spiffe_broker_spire_sync_duration_seconds_sum', { server: 's' })).toBe(0);
    expect(await value(registry, 'spiffe_broker_propagation_seconds_sum')).toBe(0);
  });

  it('uses a separate registry per instance', async () => {
    const other = createMetricsRegistry();
    new BrokerMetrics({ registry, clock });
    new BrokerMetrics({ registry: other, clock });
    expect((await registry.getMetricsAsJSON()).length).toBe((await other.getMetricsAsJSON()).length);
  });
});

describe('PropagationTracker', () => {
  it('observes first-seen → written to every target server, once', async () => {
    const registry = createMetricsRegistry();
    const clock = new FakeClock(T0);
    const metrics = new BrokerMetrics({ registry, clock });
    const tracker = new PropagationTracker({ clock, metrics, targets: () => ['s1', 's2'] });
    const obs = metrics.spireSyncObserver(tracker);
    const b = (await makePki('b.test', { sequence: 5n })).bundle;
    const ok = { trustDomain: 'b.test', ok: true, code: 0, message: '' };
    tracker.seen(b);
    await clock.advance(40);
    obs.written?.('s1', b, ok);
    expect(tracker.pending()).toEqual(['b.test']);
    obs.written?.('s1', b, ok); // a repeat write to the same server changes nothing
    await clock.advance(80);
    obs.written?.('s2', b.withSequence(5n), ok); // same non-zero sequence: a match
    expect(tracker.pending()).toEqual([]);
    obs.written?.('s2', b, ok);
    expect(await value(registry, 'spiffe_broker_propagation_seconds_count')).toBe(1);
    expect(await value(registry, 'spiffe_broker_propagation_seconds_sum')).toBeCloseTo(0.12, 9);
    expect(await value(registry, 'spiffe_broker_propagation_seconds_bucket', { le: '0.1' })).toBe(0);
    expect(await value(registry, 'spiffe_broker_propagation_seconds_bucket', { le: '0.25' })).toBe(1);
  });

  it('lets a newer bundle supersede one still propagating, and ignores failed writes', async () => {
    const registry = createMetricsRegistry();
    const clock = new FakeClock(T0);
    const metrics = new BrokerMetrics({ registry, clock });
    const tracker = new PropagationTracker({ clock, metrics, targets: () => ['s1'] });
    const obs = metrics.spireSyncObserver(tracker);
    const pki = await makePki('b.test', { sequence: 1n });
    const v1 = pki.bundle;
    const v2 = v1.withSequence(2n);
    tracker.seen(v1);
    obs.written?.('s1', v1, { trustDomain: 'b.test', ok: false, code: 14, message: 'unavailable' });
    await clock.advance(1000);
    tracker.seen(v2);
    obs.written?.('s1', v1, { trustDomain: 'b.test', ok: true, code: 0, message: '' });
    expect(tracker.pending()).toEqual(['b.test']);
    await clock.advance(10);
    obs.written?.('s1', v2, { trustDomain: 'b.test', ok: true, code: 0, message: '' });
    expect(await value(registry, 'spiffe_broker_propagation_seconds_sum')).toBeCloseTo(0.01, 9);
    tracker.seen((await makePki('c.test')).bundle);
    tracker.forget('c.test');
    expect(tracker.pending()).toEqual([]);
  });

  it('a bundle restored after a restart exports its sequence, and no age until confirmed', async () => {
    const registry = createMetricsRegistry();
    const m = new BrokerMetrics({ registry, clock: new FakeClock(T0) });
    const b = (await makePki('restored.test', { sequence: 12n })).bundle;
    m.federationObserver().restored?.('restored.test', b, 'state');
    const text = await registry.metrics();
    expect(text).toContain('spiffe_broker_bundle_sequence{trust_domain="restored.test"} 12');
    expect(text).not.toMatch(/spiffe_broker_bundle_age_seconds\{trust_domain="restored.test"\}/);
  });
});
