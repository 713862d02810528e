/**
 * The list+watch loop against a real kube-apiserver + etcd: events, resume after the server ends a
 * watch, relist after 410 Gone (a resourceVersion older than the watch cache, and one compacted
 * away in etcd).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CONFIG_MAPS,
  FEDERATION_PEERS,
  type KubeApi,
  type KubeObject,
  Reflector,
  type ReflectorEvent,
} from '../../../src/adapters/k8s/index.js';
import { systemClock } from '../../../src/platform/clock.js';
import { type KubeHarness, kubeAvailable, startKube } from '../../support/kube-harness.js';
import { apiFor, CRD_FEDERATION_PEER, eventually, federationPeer } from './helpers.js';

describe.skipIf(!kubeAvailable())('Reflector against a real kube-apiserver', () => {
  let kube: KubeHarness;
  let api: KubeApi;

  beforeAll(async () => {
    // ConfigMaps bypass the watch cache here, so their watches reach etcd and meet its compaction;
    // FederationPeers keep the default watch cache.
    kube = await startKube({
      manifests: [CRD_FEDERATION_PEER],
      apiserverArgs: ['--watch-cache-sizes=configmaps#0'],
    });
    console.info(`kube-apiserver + etcd ready in ${kube.startupMs} ms`);
    api = apiFor(kube);
  });
  afterAll(async () => {
    await kube?.stop();
  });

  function start(r: Reflector) {
    const ac = new AbortController();
    const events: ReflectorEvent[] = [];
    r.subscribe((e) => events.push(e));
    const done = r.run(ac.signal);
    return {
      events,
      names: (type: ReflectorEvent['type']) =>
        events.filter((e) => e.type === type).map((e) => ('object' in e ? e.object.metadata.name : '')),
      stop: async () => {
        ac.abort();
        await done;
      },
    };
  }

  it('sees objects created, updated and deleted', async () => {
    const r = new Reflector({ api, type: FEDERATION_PEERS, clock: systemClock });
    const run = start(r);
    try {
      await eventually('synced', () => r.synced);
      const created = await api.create(FEDERATION_PEERS, federationPeer('events-a', 'a.example'));
      await eventually('added', () => run.names('added').includes('events-a'));
      await api.replace(FEDERATION_PEERS, {
        ...created,
        spec: { ...(created.spec as object), allowEmptyBundle: true },
      });
      await eventually('updated', () => run.names('updated').includes('events-a'));
      expect((r.get('events-a')?.spec as { allowEmptyBundle?: boolean } | undefined)?.allowEmptyBundle).toBe(
        true,
      );
      await api.delete(FEDERATION_PEERS, 'events-a');
      await eventually('deleted', () => run.names('deleted').includes('events-a'));
      expect(r.get('events-a')).toBeUndefined();
    } finally {
      await run.stop();
    }
  });

  it('resumes from the last resourceVersion when the server ends a watch, without relisting', async () => {
    const lists: string[] = [];
    const watches: string[] = [];
    const r = new Reflector({
      api,
      type: FEDERATION_PEERS,
      clock: systemClock,
      watchTimeoutSeconds: 1,
      observer: { listed: (rv) => lists.push(rv), watching: (rv) => watches.push(rv) },
    });
    const run = start(r);
    try {
      await eventually('a few server-ended watches', () => watches.length >= 3);
      await api.create(FEDERATION_PEERS, federationPeer('resume-b', 'b.example'));
      await eventually('added after reconnects', () => run.names('added').includes('resume-b'));
      const before = watches.length;
      await eventually('another reconnect', () => watches.length > before);
      expect(lists).toHaveLength(1);
      expect(watches.every((rv) => rv !== '')).toBe(true);
      // The resumed watch starts at (or after) the version of the object it saw.
      const seen = Number(r.get('resume-b')?.metadata.resourceVersion);
      expect(Number(watches.at(-1))).toBeGreaterThanOrEqual(seen);
    } finally {
      await run.stop();
      await api.delete(FEDERATION_PEERS, 'resume-b');
    }
  });

  it('relists after 410 Gone and reports what changed while it was not watching', async () => {
    await api.create(FEDERATION_PEERS, federationPeer('gone-keep', 'keep.example'));
    await api.create(FEDERATION_PEERS, federationPeer('gone-removed', 'removed.example'));
    // The second watch waits at a gate while objects change, then asks for a version the server
    // no longer has: "1", older than the watch cache and compacted away in etcd.
    let watchCalls = 0;
    let openGate: () => void = () => {};
    const gate = new Promise<void>((r) => {
      openGate = r;
    });
    let atGate = false;
    const wrapped: KubeApi = {
      ...api,
      list: (t, o) => api.list(t, o),
      get: (...a) => api.get(...a),
      watch: async (t, o, cb) => {
        watchCalls++;
        if (watchCalls === 2) {
          atGate = true;
          await gate;
          return api.watch(t, { ...o, resourceVersion: '1' }, cb);
        }
        return api.watch(t, o, cb);
      },
    };
    const expired: string[] = [];
    const lists: number[] = [];
    const r = new Reflector({
      api: wrapped,
      type: FEDERATION_PEERS,
      clock: systemClock,
      watchTimeoutSeconds: 1,
      observer: { expired: (rv) => expired.push(rv), listed: (_rv, n) => lists.push(n) },
    });
    const run = start(r);
    try {
      await eventually('first watch ended', () => atGate);
      await api.delete(FEDERATION_PEERS, 'gone-removed');
      await api.create(FEDERATION_PEERS, federationPeer('gone-new', 'new.example'));
      await kube.compactEtcd();
      openGate();
      await eventually('relisted', () => lists.length >= 2);
      expect(expired).toHaveLength(1);
      expect(run.names('deleted')).toContain('gone-removed');
      expect(run.names('added')).toContain('gone-new');
      expect(
        r
          .items()
          .map((o: KubeObject) => o.metadata.name)
          .sort(),
      ).toEqual(['gone-keep', 'gone-new']);
    } finally {
      openGate();
      await run.stop();
      await api.delete(FEDERATION_PEERS, 'gone-keep');
      await api.delete(FEDERATION_PEERS, 'gone-new');
    }
  });

  it('reports a watch from a version compacted away in etcd as gone (uncached resource)', async () => {
    const { resourceVersion } = await api.list(CONFIG_MAPS, { namespace: 'default' });
    // Enough writes that the old version is history, then compaction removes that history.
    for (let i = 0; i < 3; i++) {
      await api.create(CONFIG_MAPS, {
        metadata: { name: `compact-${i}`, namespace: 'default' },
        data: { i: String(i) },
      });
    }
    await kube.compactEtcd();
    const events: string[] = [];
    const end = await api.watch(
      CONFIG_MAPS,
      { namespace: 'default', resourceVersion, timeoutSeconds: 5 },
      (e) => events.push(e.type),
    );
    expect(end).toBe('gone');
    expect(events).toEqual([]);
  });

  it('backs off and keeps retrying when the API is unreachable, then stops on abort', async () => {
    const broken = apiFor({
      ...kube,
      kubeconfig: kube.kubeconfig.replace(kube.server, 'https://127.0.0.1:1'),
    });
    const errors: number[] = [];
    const r = new Reflector({
      api: broken,
      type: FEDERATION_PEERS,
      clock: systemClock,
      initialBackoffMs: 10,
      maxBackoffMs: 40,
      observer: { error: (_e, retryIn) => errors.push(retryIn) },
    });
    const run = start(r);
    await eventually('several retries', () => errors.length >= 4);
    await run.stop();
    expect(errors.slice(0, 4)).toEqual([10, 20, 40, 40]);
    expect(r.synced).toBe(false);
  });
});
