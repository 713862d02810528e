/**
 * Bundle distribution ConfigMaps against a real kube-apiserver: created in matching namespaces,
 * updated on rotation, deleted on revocation and when a namespace stops matching, a foreign
 * ConfigMap with the same name untouched, another broker's ConfigMaps untouched.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { BUNDLE_MAP_CONFIG_MAP_NAME } from '../../../src/adapters/k8s/configmap-sink.js';
import {
  bundleConfigMapName,
  CONFIG_MAPS,
  ConfigMapSink,
  type KubeApi,
  type KubeObject,
  NAMESPACES,
  trustDomainLabelValue,
} from '../../../src/adapters/k8s/index.js';
import { parseBundle, TrustBundle } from '../../../src/core/bundle/index.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { systemClock } from '../../../src/platform/clock.js';
import { makePki } from '../../support/fixtures.js';
import { type KubeHarness, kubeAvailable, startKube } from '../../support/kube-harness.js';
import { apiFor, eventually } from './helpers.js';

const SELECTOR = 'spiffe-broker.dev/bundles=enabled';
const ENABLED = { 'spiffe-broker.dev/bundles': 'enabled' };

describe('bundleConfigMapName', () => {
  it('replaces dots, and hashes names an object name cannot hold', () => {
    expect(bundleConfigMapName('partner.example.org')).toBe('spiffe-bundle-partner-example-org');
    expect(bundleConfigMapName('under_score.example')).toBe('spiffe-bundle-under-score-example');
    expect(bundleConfigMapName('a.b')).not.toBe(bundleConfigMapName('a.b', true));
    expect(bundleConfigMapName('a.b', true)).toMatch(/^spiffe-bundle-a-b-[0-9a-f]{10}$/);
    const long = bundleConfigMapName(`${'x'.repeat(250)}.example`);
    expect(long.length).toBeLessThanOrEqual(253);
    expect(long).toMatch(/^spiffe-bundle-x+-[0-9a-f]{10}$/);
    expect(bundleConfigMapName('trailing-.example')).toBe('spiffe-bundle-trailing--example');
  });
});

describe.skipIf(!kubeAvailable())('ConfigMapSink against a real kube-apiserver', () => {
  let kube: KubeHarness;
  let api: KubeApi;

  beforeAll(async () => {
    kube = await startKube();
    console.info(`kube-apiserver + etcd ready in ${kube.startupMs} ms`);
    api = apiFor(kube);
  });
  afterAll(async () => {
    await kube?.stop();
  });

  async function namespace(name: string, labels: Record<string, string> = {}): Promise<void> {
    await api.create(NAMESPACES, { metadata: { name, labels } });
  }
  async function relabel(name: string, labels: Record<string, string>): Promise<void> {
    const ns = (await api.get(NAMESPACES, name))!;
    await api.replace(NAMESPACES, { ...ns, metadata: { ...ns.metadata, labels } });
  }
  const cm = (ns: string, name: string) => api.get(CONFIG_MAPS, name, ns);

  function startSink(
    store: FederatedBundleStore,
    extra: Partial<ConstructorParameters<typeof ConfigMapSink>[0]> = {},
  ) {
    const log: string[] = [];
    const foreign: { ns: string; name: string; code: string }[] = [];
    let passes = 0;
    const sink = new ConfigMapSink({
      api,
      clock: systemClock,
      feed: store,
      namespaceSelector: SELECTOR,
      resyncMs: 400,
      observer: {
        created: (ns, n) => log.push(`create ${ns}/${n}`),
        updated: (ns, n) => log.push(`update ${ns}/${n}`),
        deleted: (ns, n) => log.push(`delete ${ns}/${n}`),
        foreign: (ns, name, err) => foreign.push({ ns, name, code: err.code }),
        reconciled: () => {
          passes++;
        },
      },
      ...extra,
    });
    const ac = new AbortController();
    const done = sink.run(ac.signal);
    return {
      sink,
      log,
      foreign,
      passes: () => passes,
      stop: async () => {
        ac.abort();
        await done;
      },
    };
  }

  it('distributes, rotates, revokes and follows namespace selection without touching foreign ConfigMaps', async () => {
    const a = await makePki('a.example');
    const b = await makePki('b.example');
    const store = new FederatedBundleStore();
    store.set(a.bundle);
    store.set(b.bundle);
    await namespace('team-a', ENABLED);
    await namespace('team-b', ENABLED);
    await namespace('elsewhere', { team: 'x' });
    const nameA = bundleConfigMapName('a.example');
    const nameB = bundleConfigMapName('b.example');
    await api.create(CONFIG_MAPS, { metadata: { name: nameB, namespace: 'team-b' }, data: { x: 'mine' } });
    // Another broker's ConfigMap: managed-by matches, owner differs.
    await api.create(CONFIG_MAPS, {
      metadata: {
        name: 'spiffe-bundle-z-example',
        namespace: 'team-a',
        labels: { 'app.kubernetes.io/managed-by': 'spiffe-broker', 'spiffe-broker.dev/component': 'bundle' },
        annotations: { 'spiffe-broker.dev/owner': 'other-broker' },
      },
      data: { 'trust-domain': 'z.example' },
    });

    const sink = startSink(store);
    try {
      await eventually(
        'created in team-a and team-b',
        async () => (await cm('team-a', nameB)) && (await cm('team-b', nameA)),
      );
      const ca = (await cm('team-a', nameA))!;
      const data = ca.data as Record<string, string>;
      expect(Object.keys(data).sort()).toEqual(['bundle.jwks', 'bundle.pem', 'trust-domain']);
      expect(data['trust-domain']).toBe('a.example');
      expect(data['bundle.pem']).toBe(a.root.pem);
      const reparsed = parseBundle(a.td, data['bundle.jwks']!).bundle;
      expect(reparsed.x509Authorities.map((x) => x.sha256)).toEqual(
        a.bundle.x509Authorities.map((x) => x.sha256),
      );
      expect([...reparsed.jwtAuthorities.keys()]).toEqual([...a.bundle.jwtAuthorities.keys()]);
      expect(ca.metadata.labels?.['app.kubernetes.io/managed-by']).toBe('spiffe-broker');
      expect(ca.metadata.annotations?.['spiffe-broker.dev/owner']).toBe('spiffe-broker');
      expect(ca.metadata.annotations?.['spiffe-broker.dev/trust-domain']).toBe('a.example');
      // Domains are never merged: each ConfigMap holds exactly its own roots.
      expect(((await cm('team-a', nameB))!.data as Record<string, string>)['bundle.pem']).toBe(b.root.pem);

      // The foreign ConfigMap is reported and left as it was.
      await eventually('foreign reported', () => sink.foreign.length > 0);
      expect(sink.foreign[0]).toEqual({ ns: 'team-b', name: nameB, code: 'ERR_K8S_FOREIGN_OBJECT' });
      expect((await cm('team-b', nameB))!.data).toEqual({ x: 'mine' });
      expect((await api.list(CONFIG_MAPS, { namespace: 'elsewhere' })).items).toEqual([]);

      // Rotation: a new root and sequence.
      const rotated = await makePki('a.example', { sequence: 2n });
      store.set(rotated.bundle);
      await eventually('rotated in both namespaces', async () => {
        const both = await Promise.all([cm('team-a', nameA), cm('team-b', nameA)]);
        return both.every(
          (o) => (o?.data as Record<string, string> | undefined)?.['bundle.pem'] === rotated.root.pem,
        );
      });
      expect((await cm('team-a', nameA))!.metadata.annotations?.['spiffe-broker.dev/sequence']).toBe('2');

      // All keys revoked by the peer: the ConfigMap stays, with no roots.
      store.set(TrustBundle.create({ trustDomain: b.td, sequence: 9n }));
      await eventually('empty bundle distributed', async () => {
        const d = (await cm('team-a', nameB))?.data as Record<string, string> | undefined;
        return d?.['bundle.pem'] === '' && JSON.parse(d['bundle.jwks']!).keys.length === 0;
      });

      // Revocation (the peer left the allowlist): deleted, foreign one kept.
      store.delete('b.example');
      await eventually('revoked bundle removed', async () => !(await cm('team-a', nameB)));
      expect((await cm('team-b', nameB))!.data).toEqual({ x: 'mine' });

      // A namespace stops matching: its ConfigMaps go; one starts matching: they come.
      await relabel('team-a', {});
      await relabel('elsewhere', ENABLED);
      await eventually(
        'moved with the selector',
        async () => !(await cm('team-a', nameA)) && (await cm('elsewhere', nameA)),
      );
      expect((await cm('team-a', 'spiffe-bundle-z-example'))?.data).toEqual({ 'trust-domain': 'z.example' });

      // Someone deletes the broker's ConfigMap: it is recreated (its watch, or the next pass).
      await api.delete(CONFIG_MAPS, nameA, 'elsewhere');
      await eventually('recreated', () => cm('elsewhere', nameA));
    } finally {
      await sink.stop();
    }
    expect(sink.log).toContain(`delete team-a/${nameB}`);
    expect(sink.log).toContain(`update team-b/${nameA}`);
    expect(sink.log.some((l) => l.includes('spiffe-bundle-z-example'))).toBe(false);
  });

  it('repairs a ConfigMap deleted or edited by hand at once, through its own watch; its own writes start no pass', async () => {
    const w = await makePki('watched.example');
    const store = new FederatedBundleStore();
    store.set(w.bundle);
    await namespace('watched-ns', ENABLED);
    const name = bundleConfigMapName('watched.example');
    const pem = async () =>
      ((await cm('watched-ns', name))?.data as Record<string, string> | undefined)?.['bundle.pem'];
    const watching: string[] = [];
    let passes = 0;
    // No periodic pass within the test: only the watch can notice what is done by hand.
    const sink = startSink(store, {
      owner: 'watch-owner',
      resyncMs: 3_600_000,
      observer: {
        watching: (ns) => watching.push(ns),
        reconciled: () => {
          passes++;
        },
      },
    });
    try {
      await eventually(
        'created and watched',
        async () => watching.includes('watched-ns') && cm('watched-ns', name),
      );

      const deletedAt = performance.now();
      await api.delete(CONFIG_MAPS, name, 'watched-ns');
      await eventually('recreated after a delete by hand', () => cm('watched-ns', name));
      console.info(`recreated ${Math.round(performance.now() - deletedAt)} ms after the delete by hand`);

      const current = (await cm('watched-ns', name))!;
      await api.replace(CONFIG_MAPS, {
        ...current,
        data: { ...(current.data as Record<string, string>), 'bundle.pem': 'tampered\n' },
      });
      await eventually('restored after an edit by hand', async () => (await pem()) === w.root.pem);

      // A rotation is one pass: the watch events of the broker's own update start none.
      await new Promise((r) => setTimeout(r, 500));
      const before = passes;
      const rotated = await makePki('watched.example', { sequence: 2n });
      store.set(rotated.bundle);
      await eventually('rotated', async () => (await pem()) === rotated.root.pem);
      await new Promise((r) => setTimeout(r, 1_500));
      expect(passes - before).toBe(1);
    } finally {
      await sink.stop();
    }
    // One watch per matching namespace (earlier tests left some labelled), none elsewhere.
    const matching = (await api.list(NAMESPACES, { labelSelector: SELECTOR })).items.map(
      (n) => n.metadata.name,
    );
    expect(watching.sort()).toEqual(matching.sort());
  });

  it('after a restart, removes ConfigMaps from namespaces that stopped matching while it was down', async () => {
    const c = await makePki('c.example');
    const store = new FederatedBundleStore();
    store.set(c.bundle);
    await namespace('restart-ns', ENABLED);
    const name = bundleConfigMapName('c.example');
    const first = startSink(store, { owner: 'restart-owner' });
    await eventually('created', () => cm('restart-ns', name));
    await first.stop();
    await relabel('restart-ns', {});
    const second = startSink(store, { owner: 'restart-owner' });
    try {
      await eventually('swept', async () => !(await cm('restart-ns', name)));
    } finally {
      await second.stop();
    }
  });

  it('is a Sink: apply() converges to the set it is given and reports what it wrote and removed', async () => {
    const a = await makePki('sink-a.example');
    await namespace('as-sink', ENABLED);
    // Not running its loop: apply() alone converges (it watches the namespaces for its pass).
    const s = new ConfigMapSink({
      api,
      clock: systemClock,
      feed: new FederatedBundleStore(),
      namespaceSelector: SELECTOR,
      owner: 'sink-owner',
    });
    {
      expect(s.name).toBe('configmaps');
      const wrote = await s.apply({ bundles: new Map([['sink-a.example', a.bundle]]), retained: new Set() });
      expect(wrote).toEqual({ ok: true, written: ['sink-a.example'], removed: [], failed: [] });
      expect(await cm('as-sink', bundleConfigMapName('sink-a.example'))).toBeDefined();
      const again = await s.apply({ bundles: new Map([['sink-a.example', a.bundle]]), retained: new Set() });
      expect(again).toEqual({ ok: true, written: [], removed: [], failed: [] });
      const gone = await s.apply({ bundles: new Map(), retained: new Set() });
      expect(gone).toEqual({ ok: true, written: [], removed: ['sink-a.example'], failed: [] });
      expect(await cm('as-sink', bundleConfigMapName('sink-a.example'))).toBeUndefined();
    }
  });

  it('suffixes names when two trust domains map to the same ConfigMap name', async () => {
    const dots = await makePki('x.y.example');
    const dashes = await makePki('x-y.example');
    const store = new FederatedBundleStore();
    store.set(dots.bundle);
    store.set(dashes.bundle);
    await namespace('collide', ENABLED);
    const sink = startSink(store, { owner: 'collide-owner' });
    try {
      const names = await eventually('two ConfigMaps', async () => {
        const { items } = await api.list(CONFIG_MAPS, {
          namespace: 'collide',
          labelSelector: 'spiffe-broker.dev/component=bundle',
        });
        return items.length === 2 ? items.map((o: KubeObject) => o.metadata.name).sort() : undefined;
      });
      expect(names).toEqual(
        [bundleConfigMapName('x-y.example', true), bundleConfigMapName('x.y.example', true)].sort(),
      );
    } finally {
      await sink.stop();
    }
  });

  it('writes one SPIFFE Bundle Map ConfigMap per namespace (gRPC and Envoy keys, X.509 only), follows changes and selection', async () => {
    const a = await makePki('map-a.example');
    const b = await makePki('map-b.example');
    const jwtOnly = TrustBundle.create({
      trustDomain: (await makePki('map-jwt.example')).td,
      jwtAuthorities: [...a.bundle.jwtAuthorities.values()],
    });
    const store = new FederatedBundleStore();
    store.set(a.bundle);
    store.set(b.bundle);
    store.set(jwtOnly);
    await namespace('map-one', ENABLED);
    await namespace('map-two', ENABLED);
    await api.create(CONFIG_MAPS, {
      metadata: { name: BUNDLE_MAP_CONFIG_MAP_NAME, namespace: 'map-two' },
      data: { x: 'mine' },
    });
    type MapDoc = { trust_domains: Record<string, { keys: Record<string, unknown>[] }> };
    /** The Bundle Map ConfigMap's gRPC document, after checking the Envoy key holds the same bytes. */
    const mapIn = async (ns: string): Promise<MapDoc | undefined> => {
      const o = await cm(ns, BUNDLE_MAP_CONFIG_MAP_NAME);
      const data = o?.data as Record<string, string> | undefined;
      if (!data?.['grpc-bundle-map.json']) return undefined;
      expect(Object.keys(data).sort()).toEqual(['envoy-bundle-map.json', 'grpc-bundle-map.json']);
      expect(data['envoy-bundle-map.json']).toBe(data['grpc-bundle-map.json']);
      return JSON.parse(data['grpc-bundle-map.json']!) as MapDoc;
    };
    const x5c = (doc: MapDoc | undefined, td: string) =>
      doc?.trust_domains[td]?.keys.map((k) => (k.x5c as string[])[0]);
    const der64 = (pem: string) => pem.replace(/-----[^-]+-----|\s/g, '');
    const sink = startSink(store, { owner: 'map-owner' });
    try {
      const doc = await eventually('the map in map-one', () => mapIn('map-one'));
      // X.509 authorities only; the JWT-only domain is left out, never written empty.
      expect(Object.keys(doc.trust_domains)).toEqual(['map-a.example', 'map-b.example']);
      for (const td of ['map-a.example', 'map-b.example']) {
        for (const k of doc.trust_domains[td]!.keys) {
          expect(k.use).toBe('x509-svid');
          expect(k.kid).toBeUndefined();
          expect(k.x5c as string[]).toHaveLength(1);
        }
      }
      expect(x5c(doc, 'map-a.example')).toEqual([der64(a.root.pem)]);
      expect(x5c(doc, 'map-b.example')).toEqual([der64(b.root.pem)]);
      const obj = (await cm('map-one', BUNDLE_MAP_CONFIG_MAP_NAME))!;
      expect(obj.metadata.labels).toMatchObject({
        'app.kubernetes.io/managed-by': 'spiffe-broker',
        'spiffe-broker.dev/component': 'bundle-map',
      });
      expect(obj.metadata.labels?.['spiffe-broker.dev/trust-domain']).toBeUndefined();
      expect(obj.metadata.annotations).toMatchObject({
        'spiffe-broker.dev/owner': 'map-owner',
        'spiffe-broker.dev/trust-domains': 'map-a.example,map-b.example',
      });
      // A foreign ConfigMap of that name is reported and left alone.
      await eventually('foreign map reported', () =>
        sink.foreign.some((f) => f.ns === 'map-two' && f.name === BUNDLE_MAP_CONFIG_MAP_NAME),
      );
      expect((await cm('map-two', BUNDLE_MAP_CONFIG_MAP_NAME))!.data).toEqual({ x: 'mine' });

      // Rotation and revocation reach the map.
      const rotated = await makePki('map-a.example', { sequence: 2n });
      store.set(rotated.bundle);
      await eventually(
        'rotated in the map',
        async () => x5c(await mapIn('map-one'), 'map-a.example')?.[0] === der64(rotated.root.pem),
      );
      store.delete('map-b.example');
      await eventually('revoked from the map', async () => {
        const d = await mapIn('map-one');
        return d && Object.keys(d.trust_domains).join() === 'map-a.example';
      });
      // No X.509 authority left: no map (an empty one would be refused by Envoy).
      store.delete('map-a.example');
      await eventually('map removed', async () => !(await cm('map-one', BUNDLE_MAP_CONFIG_MAP_NAME)));
      store.set(rotated.bundle);
      await eventually('map back', () => mapIn('map-one'));
      // The namespace stops matching: the map goes with the per-domain ConfigMaps.
      await relabel('map-one', {});
      await eventually(
        'map gone with the selector',
        async () =>
          !(await cm('map-one', BUNDLE_MAP_CONFIG_MAP_NAME)) &&
          !(await cm('map-one', bundleConfigMapName('map-a.example'))),
      );
    } finally {
      await sink.stop();
    }
    expect(sink.log).toContain(`update map-one/${BUNDLE_MAP_CONFIG_MAP_NAME}`);
    expect(sink.log).toContain(`delete map-one/${BUNDLE_MAP_CONFIG_MAP_NAME}`);
    expect((await cm('map-two', BUNDLE_MAP_CONFIG_MAP_NAME))!.data).toEqual({ x: 'mine' });
  });

  it('refuses an empty namespace selector', () => {
    expect(
      () =>
        new ConfigMapSink({
          api,
          clock: systemClock,
          feed: new FederatedBundleStore(),
          namespaceSelector: ' ',
        }),
    ).toThrow(expect.objectContaining({ code: 'ERR_K8S_CONFIG' }));
  });
});

describe.skipIf(!kubeAvailable())('bundle ConfigMaps for trust-manager', () => {
  let kube: KubeHarness;
  let api: KubeApi;
  beforeAll(async () => {
    kube = await startKube();
    api = apiFor(kube);
  });
  afterAll(async () => {
    await kube?.stop();
  });

  it('label each ConfigMap with its trust domain, so a Bundle source selector picks exactly one', async () => {
    const longName = `${'l'.repeat(70)}.example`;
    const a = await makePki('tm-a.example');
    const long = await makePki(longName);
    const store = new FederatedBundleStore();
    store.set(a.bundle);
    store.set(long.bundle);
    // trust-manager reads sources from its trust namespace only (default cert-manager).
    await api.create(NAMESPACES, { metadata: { name: 'cert-manager', labels: ENABLED } });
    const sink = new ConfigMapSink({ api, clock: systemClock, feed: store, namespaceSelector: SELECTOR });
    const ac = new AbortController();
    const done = sink.run(ac.signal);
    // What a Bundle's `sources: [{configMap: {selector: {matchLabels: …}, key: bundle.pem}}]` lists.
    const selected = async (td: string) =>
      (
        await api.list(CONFIG_MAPS, {
          namespace: 'cert-manager',
          labelSelector: `app.kubernetes.io/managed-by=spiffe-broker,spiffe-broker.dev/trust-domain=${trustDomainLabelValue(td)}`,
        })
      ).items;
    try {
      await eventually('both written', async () => (await selected(longName)).length === 1);
      const forA = await selected('tm-a.example');
      expect(forA.map((o) => o.metadata.name)).toEqual([bundleConfigMapName('tm-a.example')]);
      expect(forA[0]!.metadata.labels?.['spiffe-broker.dev/trust-domain']).toBe('tm-a.example');
      expect((forA[0]!.data as Record<string, string>)['bundle.pem']).toBe(a.root.pem);
      const forLong = (await selected(longName))[0]!;
      const label = forLong.metadata.labels?.['spiffe-broker.dev/trust-domain'];
      expect(label).toMatch(/^l+-[0-9a-f]{10}$/);
      expect(label!.length).toBeLessThanOrEqual(63);
      expect(forLong.metadata.annotations?.['spiffe-broker.dev/trust-domain']).toBe(longName);
      expect((forLong.data as Record<string, string>)['bundle.pem']).toBe(long.root.pem);

      // deploy/examples/trust-manager-bundle.yaml: each Bundle's source selects exactly the
      // ConfigMap of its own trust domain in the trust namespace, and its key holds the roots.
      const example = parseAllDocuments(
        readFileSync('deploy/examples/trust-manager-bundle.yaml', 'utf8'),
      ).map((d) => d.toJSON() as KubeObject);
      const binding = example.find((d) => d.kind === 'RoleBinding')!;
      expect(binding.metadata.namespace).toBe('cert-manager');
      expect((binding.roleRef as { name: string }).name).toBe('spiffe-broker-bundle-configmaps');
      const bundles = example.filter((d) => d.kind === 'Bundle');
      expect(bundles).toHaveLength(2);
      const pkis = new Map<string, Awaited<ReturnType<typeof makePki>>>();
      for (const b of bundles) {
        const sources = (
          b.spec as {
            sources: { configMap: { selector: { matchLabels: Record<string, string> }; key: string } }[];
          }
        ).sources;
        expect(sources).toHaveLength(1);
        const td = sources[0]!.configMap.selector.matchLabels['spiffe-broker.dev/trust-domain']!;
        const pki = await makePki(td);
        pkis.set(td, pki);
        store.set(pki.bundle);
      }
      for (const b of bundles) {
        const { selector, key } = (
          b.spec as {
            sources: { configMap: { selector: { matchLabels: Record<string, string> }; key: string } }[];
          }
        ).sources[0]!.configMap;
        const labelSelector = Object.entries(selector.matchLabels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',');
        const td = selector.matchLabels['spiffe-broker.dev/trust-domain']!;
        const items = await eventually(`the ConfigMap for ${b.metadata.name}`, async () => {
          const { items } = await api.list(CONFIG_MAPS, { namespace: 'cert-manager', labelSelector });
          return items.length > 0 ? items : undefined;
        });
        expect(items.map((o) => o.metadata.annotations?.['spiffe-broker.dev/trust-domain'])).toEqual([td]);
        expect((items[0]!.data as Record<string, string>)[key]).toBe(pkis.get(td)!.root.pem);
      }
    } finally {
      ac.abort();
      await done;
    }
  });
});
