/**
 * ClusterTrustBundles against a real kube-apiserver 1.36 with the beta API turned on: one object per
 * peer trust domain, selected alone by signer name + trust-domain label (what a projected volume's
 * `clusterTrustBundle` source asks for), updated on rotation, deleted on revocation, none for a
 * bundle without X.509 CA authorities, foreign objects untouched, and the shipped RBAC both
 * necessary (attest) and sufficient.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import {
  CLUSTER_TRUST_BUNDLES,
  ClusterTrustBundleSink,
  clusterTrustBundleName,
  clusterTrustBundlePem,
  type KubeApi,
  type KubeObject,
  signerNameProblem,
  trustDomainLabelValue,
} from '../../../src/adapters/k8s/index.js';
import { TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import type { SinkReport } from '../../../src/engine/publish/sink.js';
import { systemClock } from '../../../src/platform/clock.js';
import { makePki } from '../../support/fixtures.js';
import { type KubeHarness, kubeAvailable, startKube } from '../../support/kube-harness.js';
import { apiFor, eventually } from './helpers.js';

/** What kube-apiserver 1.36 needs to serve ClusterTrustBundles (beta, off by default). */
const CTB_APISERVER_ARGS = [
  // The projection gate lets the API server keep (and validate) a pod's clusterTrustBundle source.
  '--feature-gates=ClusterTrustBundle=true,ClusterTrustBundleProjection=true',
  '--runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true',
];
const SIGNER = 'spiffe-broker.dev/federation';
const TD_LABEL = 'spiffe-broker.dev/trust-domain';
const CTB_PATH = '/apis/certificates.k8s.io/v1beta1/clustertrustbundles';

describe('ClusterTrustBundle naming and content', () => {
  it('prefixes the name with the signer name (/ as :) and keeps DNS-subdomain trust domains readable', () => {
    expect(clusterTrustBundleName(SIGNER, 'partner.example.org')).toBe(
      'spiffe-broker.dev:federation:partner.example.org',
    );
    const underscore = clusterTrustBundleName(SIGNER, 'a_b.example');
    expect(underscore).toMatch(/^spiffe-broker\.dev:federation:a-b-example-[0-9a-f]{10}$/);
    expect(underscore).not.toBe(clusterTrustBundleName(SIGNER, 'a-b.example'));
    const long = clusterTrustBundleName(SIGNER, `${'x'.repeat(250)}.example`);
    expect(long.slice('spiffe-broker.dev:federation:'.length).length).toBeLessThanOrEqual(253);
  });

  it('checks signer names by the API rules', () => {
    expect(signerNameProblem(SIGNER)).toBeUndefined();
    expect(signerNameProblem('example.com/a.b-c')).toBeUndefined();
    expect(signerNameProblem('nodomain')).toMatch(/domain and a path/);
    expect(signerNameProblem('a/b/c')).toMatch(/domain and a path/);
    expect(signerNameProblem('localhost/x')).toMatch(/two dot-separated labels/);
    expect(signerNameProblem('Example.com/x')).toMatch(/DNS labels/);
    expect(signerNameProblem('example.com/X_y')).toMatch(/path/);
    expect(signerNameProblem('kubernetes.io/kube-apiserver-client')).toMatch(/Kubernetes project/);
    expect(signerNameProblem('x.kubernetes.io/y')).toMatch(/Kubernetes project/);
  });

  it('labels trust domains as they are when they fit a label value, else a readable prefix and a hash', () => {
    expect(trustDomainLabelValue('partner.example.org')).toBe('partner.example.org');
    expect(trustDomainLabelValue('under_score.example')).toBe('under_score.example');
    const long = trustDomainLabelValue(`${'y'.repeat(70)}.example`);
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^y+-[0-9a-f]{10}$/);
    expect(trustDomainLabelValue('_lead.example')).toMatch(/^lead\.example-[0-9a-f]{10}$/);
    expect(trustDomainLabelValue(`${'y'.repeat(70)}.example`)).toBe(long);
  });

  it('writes every X.509 authority as PEM, in bundle order, and nothing for a bundle without one', async () => {
    const p = await makePki('pem.example');
    const bundle = TrustBundle.create({
      trustDomain: p.td,
      x509Authorities: [p.root.der, p.intermediate.der],
    });
    expect(clusterTrustBundlePem(bundle)).toBe(p.root.pem + p.intermediate.pem);
    expect(clusterTrustBundlePem(TrustBundle.create({ trustDomain: p.td }))).toBe('');
  });
});

describe.skipIf(!kubeAvailable())('ClusterTrustBundleSink against a real kube-apiserver', () => {
  let kube: KubeHarness;
  let api: KubeApi;

  beforeAll(async () => {
    kube = await startKube({ apiserverArgs: CTB_APISERVER_ARGS });
    console.info(`kube-apiserver + etcd ready in ${kube.startupMs} ms (ClusterTrustBundle on)`);
    api = apiFor(kube);
  });
  afterAll(async () => {
    await kube?.stop();
  });

  const ctb = (name: string) => api.get(CLUSTER_TRUST_BUNDLES, name);
  const spec = (o: KubeObject | undefined) =>
    o?.spec as { signerName: string; trustBundle: string } | undefined;

  /** What a projected volume `clusterTrustBundle: {signerName, labelSelector}` selects. */
  async function select(signer: string, trustDomain: string): Promise<KubeObject[]> {
    // Through KubeApi's fieldSelector (the example test below uses a raw request).
    const { items } = await api.list(CLUSTER_TRUST_BUNDLES, {
      fieldSelector: `spec.signerName=${signer}`,
      labelSelector: `${TD_LABEL}=${trustDomainLabelValue(trustDomain)}`,
    });
    return items;
  }

  function startSink(
    store: FederatedBundleStore,
    extra: Partial<ConstructorParameters<typeof ClusterTrustBundleSink>[0]> = {},
  ) {
    const log: string[] = [];
    const skipped: string[] = [];
    const foreign: string[] = [];
    const sink = new ClusterTrustBundleSink({
      api,
      clock: systemClock,
      feed: store,
      resyncMs: 400,
      observer: {
        created: (n) => log.push(`create ${n}`),
        updated: (n) => log.push(`update ${n}`),
        deleted: (n) => log.push(`delete ${n}`),
        skipped: (td) => skipped.push(td),
        foreign: (n, err) => foreign.push(`${n} ${err.code}`),
      },
      ...extra,
    });
    const ac = new AbortController();
    const done = sink.run(ac.signal);
    return {
      sink,
      log,
      skipped,
      foreign,
      stop: async () => {
        ac.abort();
        await done;
      },
    };
  }

  it('publishes one object per peer, selectable alone, rotated, revoked, never touching foreign objects', async () => {
    const a = await makePki('a.example');
    const b = await makePki('b.example');
    const jwtOnly = await makePki('jwt-only.example');
    const store = new FederatedBundleStore();
    store.set(a.bundle);
    store.set(b.bundle);
    store.set(
      TrustBundle.create({
        trustDomain: jwtOnly.td,
        jwtAuthorities: [...jwtOnly.bundle.jwtAuthorities.values()],
      }),
    );
    const nameA = clusterTrustBundleName(SIGNER, 'a.example');
    const nameB = clusterTrustBundleName(SIGNER, 'b.example');
    const nameC = clusterTrustBundleName(SIGNER, 'c.example');

    // Foreign objects: one with the broker's would-be name for c.example (no broker labels), one
    // of another broker (labels match, owner differs), one without a signer.
    const c = await makePki('c.example');
    const other = await makePki('other.example');
    const foreignObjects = [
      { metadata: { name: nameC }, spec: { signerName: SIGNER, trustBundle: c.root.pem } },
      {
        metadata: {
          name: clusterTrustBundleName(SIGNER, 'other.example'),
          labels: {
            'app.kubernetes.io/managed-by': 'spiffe-broker',
            'spiffe-broker.dev/component': 'cluster-trust-bundle',
            [TD_LABEL]: 'other.example',
          },
          annotations: { 'spiffe-broker.dev/owner': 'another-broker' },
        },
        spec: { signerName: SIGNER, trustBundle: other.root.pem },
      },
      { metadata: { name: 'unsigned-roots' }, spec: { trustBundle: other.root.pem } },
    ];
    for (const o of foreignObjects) await api.create(CLUSTER_TRUST_BUNDLES, o);
    const foreignBefore = await Promise.all(foreignObjects.map((o) => ctb(o.metadata.name)));

    const sink = startSink(store);
    try {
      await eventually('created for a and b', async () => (await ctb(nameA)) && (await ctb(nameB)));
      const objA = (await ctb(nameA))!;
      expect(spec(objA)).toEqual({ signerName: SIGNER, trustBundle: a.root.pem });
      expect(objA.metadata.labels).toEqual({
        'app.kubernetes.io/managed-by': 'spiffe-broker',
        'spiffe-broker.dev/component': 'cluster-trust-bundle',
        [TD_LABEL]: 'a.example',
      });
      expect(objA.metadata.annotations).toMatchObject({
        'spiffe-broker.dev/owner': 'spiffe-broker',
        'spiffe-broker.dev/trust-domain': 'a.example',
        'spiffe-broker.dev/sequence': '1',
      });
      expect(spec(await ctb(nameB))!.trustBundle).toBe(b.root.pem);

      // No X.509 authority: no object, and the sink says so.
      expect(await ctb(clusterTrustBundleName(SIGNER, 'jwt-only.example'))).toBeUndefined();
      expect(sink.skipped).toContain('jwt-only.example');

      // The projected-volume query (signer name + trust-domain label) selects exactly one domain.
      const selected = await select(SIGNER, 'a.example');
      expect(selected.map((o) => o.metadata.name)).toEqual([nameA]);
      expect(spec(selected[0])!.trustBundle).toBe(a.root.pem);
      expect((await select(SIGNER, 'b.example')).map((o) => o.metadata.name)).toEqual([nameB]);
      expect(await select('example.com/unrelated', 'a.example')).toEqual([]);

      // Rotation: new root, new sequence.
      const rotated = await makePki('a.example', { sequence: 2n });
      store.set(rotated.bundle);
      await eventually('rotated', async () => spec(await ctb(nameA))?.trustBundle === rotated.root.pem);
      expect((await ctb(nameA))!.metadata.annotations?.['spiffe-broker.dev/sequence']).toBe('2');

      // The peer drops every X.509 authority: the object goes (the API cannot hold an empty one).
      store.set(TrustBundle.create({ trustDomain: b.td, sequence: 5n }));
      await eventually('b removed when it has no roots', async () => !(await ctb(nameB)));

      // c.example joins, but a foreign object holds its name: reported, left as it was.
      store.set(c.bundle);
      await eventually('foreign reported', () => sink.foreign.length > 0);
      expect(sink.foreign[0]).toBe(`${nameC} ERR_K8S_FOREIGN_OBJECT`);

      // Revocation: a leaves the allowlist.
      store.delete('a.example');
      await eventually('revoked bundle removed', async () => !(await ctb(nameA)));

      // Someone deletes the broker's object: the next pass puts it back.
      store.set(b.bundle);
      await eventually('b back', () => ctb(nameB));
      await api.delete(CLUSTER_TRUST_BUNDLES, nameB);
      await eventually('recreated on resync', () => ctb(nameB));
    } finally {
      await sink.stop();
    }
    const foreignAfter = await Promise.all(foreignObjects.map((o) => ctb(o.metadata.name)));
    expect(foreignAfter.map((o) => o?.metadata.resourceVersion)).toEqual(
      foreignBefore.map((o) => o?.metadata.resourceVersion),
    );
    expect(sink.log).toContain(`update ${nameA}`);
    expect(sink.log).toContain(`delete ${nameA}`);
    expect(sink.log).toContain(`delete ${nameB}`);
    expect(sink.log.filter((l) => l.includes('other.example') || l.includes(nameC))).toEqual([]);
  });

  it('is a Sink: apply() converges to the set it is given, keeps retained trust domains, reports', async () => {
    const p = await makePki('sink-p.example');
    const q = await makePki('sink-q.example');
    const signerName = 'sink.example.com/federation';
    const reports: SinkReport[] = [];
    const sink = new ClusterTrustBundleSink({
      api,
      clock: systemClock,
      signerName,
      owner: 'sink-owner',
      onReport: (r) => reports.push(r),
    });
    expect(sink.name).toBe('cluster-trust-bundles');
    expect(sink.status()).toEqual({
      signerName,
      lastWrite: null,
      lastError: null,
      trustDomains: [],
      omitted: [],
    });
    // p lists a root and an intermediate: both CA certificates, as the API requires.
    const twoRoots = TrustBundle.create({
      trustDomain: p.td,
      x509Authorities: [p.root.der, p.intermediate.der],
    });
    const jwtOnly = TrustBundle.create({ trustDomain: TrustDomain.parse('sink-jwt.example') });
    const both = new Map([
      ['sink-p.example', twoRoots],
      ['sink-q.example', q.bundle],
      ['sink-jwt.example', jwtOnly],
    ]);
    expect(await sink.apply({ bundles: both, retained: new Set() })).toEqual({
      ok: true,
      written: ['sink-p.example', 'sink-q.example'],
      removed: [],
      failed: [],
    });
    const afterWrite = sink.status();
    expect(afterWrite.lastWrite).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(afterWrite.lastError).toBeNull();
    expect(afterWrite.trustDomains).toEqual(['sink-p.example', 'sink-q.example']);
    expect(afterWrite.omitted).toEqual([
      { trustDomain: 'sink-jwt.example', reason: expect.stringContaining('no X.509 CA authority') },
    ]);
    expect(reports).toHaveLength(1);
    expect(await sink.apply({ bundles: both, retained: new Set() })).toEqual({
      ok: true,
      written: [],
      removed: [],
      failed: [],
    });
    // q has no bundle held right now but stays allowlisted: its object is kept.
    expect(
      await sink.apply({
        bundles: new Map([['sink-p.example', twoRoots]]),
        retained: new Set(['sink-q.example']),
      }),
    ).toEqual({ ok: true, written: [], removed: [], failed: [] });
    expect(await ctb(clusterTrustBundleName(signerName, 'sink-q.example'))).toBeDefined();
    expect(sink.status().trustDomains).toEqual(['sink-p.example', 'sink-q.example']);
    expect(sink.status().lastWrite).toBe(afterWrite.lastWrite);
    expect(spec(await ctb(clusterTrustBundleName(signerName, 'sink-p.example')))?.trustBundle).toBe(
      p.root.pem + p.intermediate.pem,
    );
    expect(await sink.apply({ bundles: new Map(), retained: new Set() })).toEqual({
      ok: true,
      written: [],
      removed: ['sink-p.example', 'sink-q.example'],
      failed: [],
    });
  });

  it('the example (deploy/examples/cluster-trust-bundles.yaml): its pod is valid and its projection selects one domain', async () => {
    const example = parseAllDocuments(readFileSync('deploy/examples/cluster-trust-bundles.yaml', 'utf8')).map(
      (d) => d.toJSON() as KubeObject,
    );
    const binding = example.find((d) => d.kind === 'ClusterRoleBinding')!;
    expect((binding.roleRef as { name: string }).name).toBe('spiffe-broker-cluster-trust-bundles');
    const pod = example.find((d) => d.kind === 'Pod')!;
    type Projection = {
      signerName: string;
      labelSelector: { matchLabels: Record<string, string> };
      path: string;
    };
    const projection = (
      pod.spec as { volumes: { projected: { sources: { clusterTrustBundle: Projection }[] } }[] }
    ).volumes[0]!.projected.sources[0]!.clusterTrustBundle;
    expect(projection.signerName).toBe(SIGNER);
    const td = projection.labelSelector.matchLabels[TD_LABEL]!;
    expect(td).toBe('partner-a.example.org');

    // The API server accepts the pod with the projection (dry run: nothing is stored).
    const dry = await kube.request('POST', '/api/v1/namespaces/default/pods?dryRun=All', pod);
    expect(dry.status, JSON.stringify(dry.body)).toBe(201);
    expect(JSON.stringify(dry.body)).toContain('"clusterTrustBundle"');

    const a = await makePki('partner-a.example.org');
    const b = await makePki('partner-b.example.org');
    const sink = new ClusterTrustBundleSink({
      api,
      clock: systemClock,
      feed: new FederatedBundleStore(),
      owner: 'example-owner',
    });
    const bundles = new Map([
      ['partner-a.example.org', a.bundle],
      ['partner-b.example.org', b.bundle],
    ]);
    expect((await sink.apply({ bundles, retained: new Set() })).ok).toBe(true);
    const q = new URLSearchParams({
      fieldSelector: `spec.signerName=${projection.signerName}`,
      labelSelector: Object.entries(projection.labelSelector.matchLabels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    });
    const selected = (await kube.request('GET', `${CTB_PATH}?${q}`)).body.items as KubeObject[];
    expect(selected.map((o) => spec(o)!.trustBundle)).toEqual([a.root.pem]);
    await sink.apply({ bundles: new Map(), retained: new Set() });
  });

  it('the shipped ClusterRole is sufficient, and attest on the signer is necessary', async () => {
    const docs = parseAllDocuments(readFileSync('deploy/base/rbac.yaml', 'utf8')).map(
      (d) => d.toJSON() as KubeObject,
    );
    const role = docs.find(
      (d) => d.kind === 'ClusterRole' && d.metadata.name === 'spiffe-broker-cluster-trust-bundles',
    );
    expect(role).toBeDefined();
    const created = await kube.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', role);
    expect(created.status).toBe(201);
    const as = { 'Impersonate-User': 'ctb-broker' };
    const p = await makePki('rbac.example');
    const body = (signer: string) => ({
      apiVersion: 'certificates.k8s.io/v1beta1',
      kind: 'ClusterTrustBundle',
      metadata: { name: clusterTrustBundleName(signer, 'rbac.example') },
      spec: { signerName: signer, trustBundle: p.root.pem },
    });
    // Not bound yet: forbidden.
    expect((await kube.request('POST', CTB_PATH, body(SIGNER), as)).status).toBe(403);
    const bound = await kube.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
      metadata: { name: 'ctb-broker' },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: 'spiffe-broker-cluster-trust-bundles',
      },
      subjects: [{ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: 'ctb-broker' }],
    });
    expect(bound.status).toBe(201);
    await eventually(
      'the binding is in effect',
      async () => (await kube.request('POST', CTB_PATH, body(SIGNER), as)).status === 201,
    );
    // Another signer: the resource verb is granted, attest is not — the admission plugin refuses.
    const otherSigner = await kube.request('POST', CTB_PATH, body('other.example.com/signer'), as);
    expect(otherSigner.status).toBe(403);
    expect(JSON.stringify(otherSigner.body)).toMatch(/attest/);
    // Update and delete as the broker's role.
    const name = clusterTrustBundleName(SIGNER, 'rbac.example');
    const current = await kube.request('GET', `${CTB_PATH}/${encodeURIComponent(name)}`, undefined, as);
    expect(current.status).toBe(200);
    const rotated = await makePki('rbac.example');
    const updated = await kube.request(
      'PUT',
      `${CTB_PATH}/${encodeURIComponent(name)}`,
      { ...current.body, spec: { signerName: SIGNER, trustBundle: rotated.root.pem } },
      as,
    );
    expect(updated.status).toBe(200);
    expect(
      (await kube.request('DELETE', `${CTB_PATH}/${encodeURIComponent(name)}`, undefined, as)).status,
    ).toBe(200);
  });

  it('refuses a Kubernetes-reserved or malformed signer name', () => {
    for (const signerName of ['kubernetes.io/kube-apiserver-client', 'no-slash']) {
      expect(
        () =>
          new ClusterTrustBundleSink({
            api,
            clock: systemClock,
            feed: new FederatedBundleStore(),
            signerName,
          }),
      ).toThrow(expect.objectContaining({ code: 'ERR_K8S_CONFIG' }));
    }
  });
});

describe.skipIf(!kubeAvailable())('ClusterTrustBundleSink on a kube-apiserver without the feature', () => {
  let kube: KubeHarness;
  beforeAll(async () => {
    kube = await startKube();
  });
  afterAll(async () => {
    await kube?.stop();
  });

  it('reports a failure that names the flags to turn on, and writes nothing', async () => {
    const p = await makePki('off.example');
    const sink = new ClusterTrustBundleSink({
      api: apiFor(kube),
      clock: systemClock,
      feed: new FederatedBundleStore(),
    });
    const report = await sink.apply({ bundles: new Map([['off.example', p.bundle]]), retained: new Set() });
    expect(report.ok).toBe(false);
    expect(report.written).toEqual([]);
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0]!.code).toBe('ERR_K8S_NOT_FOUND');
    expect(report.failed[0]!.message).toContain('--feature-gates=ClusterTrustBundle=true');
    expect(sink.status().lastError).toMatchObject({ code: 'ERR_K8S_NOT_FOUND' });
    expect(sink.status().lastWrite).toBeNull();
  });
});
