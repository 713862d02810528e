/**
 * The FederationPeer CRD and the CRD allowlist source against a real kube-apiserver: server-side
 * schema validation, printer columns, conversion through the YAML allowlist's rules, status
 * conditions for rejected objects, references, ClusterFederatedTrustDomain adoption, and the
 * status writer's conflict retry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLUSTER_FEDERATED_TRUST_DOMAINS,
  CONFIG_MAPS,
  CrdAllowlistSource,
  FEDERATION_PEERS,
  type FederationPeerStatus,
  FederationPeerStatusWriter,
  type KubeApi,
  KubeApiError,
  type KubeObject,
  MemoryReferenceStore,
} from '../../../src/adapters/k8s/index.js';
import { marshalBundle } from '../../../src/core/bundle/index.js';
import type { Allowlist } from '../../../src/engine/config/index.js';
import { systemClock } from '../../../src/platform/clock.js';
import { makePki } from '../../support/fixtures.js';
import { type KubeHarness, kubeAvailable, startKube } from '../../support/kube-harness.js';
import { apiFor, CRD_CFTD_FIXTURE, CRD_FEDERATION_PEER, eventually, federationPeer } from './helpers.js';

describe.skipIf(!kubeAvailable())('FederationPeer CRD and CRD allowlist source (real kube-apiserver)', () => {
  let kube: KubeHarness;
  let api: KubeApi;

  beforeAll(async () => {
    kube = await startKube({ manifests: [CRD_FEDERATION_PEER, CRD_CFTD_FIXTURE] });
    console.info(`kube-apiserver + etcd ready in ${kube.startupMs} ms`);
    api = apiFor(kube);
  });
  afterAll(async () => {
    await kube?.stop();
  });

  async function rejectedBy(obj: KubeObject): Promise<string> {
    const err = await api.create(FEDERATION_PEERS, obj).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).code).toBe('ERR_K8S_INVALID');
    expect((err as KubeApiError).httpStatus).toBe(422);
    return (err as Error).message;
  }

  describe('server-side schema validation', () => {
    it.each([
      ['an upper-case trust domain', { trustDomain: 'Partner.Example' }, 'spec.trustDomain'],
      ['a SPIFFE ID as trust domain', { trustDomain: 'spiffe://partner.example' }, 'spec.trustDomain'],
      [
        'an http URL',
        { bundleEndpoint: { urls: ['http://partner.example/b'], profile: 'https_web' } },
        'spec.bundleEndpoint.urls[0]',
      ],
      [
        'userinfo in the URL',
        { bundleEndpoint: { urls: ['https://user@partner.example/b'], profile: 'https_web' } },
        'spec.bundleEndpoint.urls[0]',
      ],
      ['no URL', { bundleEndpoint: { urls: [], profile: 'https_web' } }, 'spec.bundleEndpoint.urls'],
      [
        'an unknown profile',
        { bundleEndpoint: { urls: ['https://p.example/'], profile: 'http' } },
        'profile',
      ],
      [
        'https_spiffe without endpointSPIFFEID',
        { bundleEndpoint: { urls: ['https://p.example/'], profile: 'https_spiffe' } },
        'https_spiffe needs endpointSPIFFEID',
      ],
      [
        'endpointSPIFFEID with https_web',
        {
          bundleEndpoint: {
            urls: ['https://p.example/'],
            profile: 'https_web',
            endpointSPIFFEID: 'spiffe://p.example/server',
          },
        },
        'only valid with profile https_spiffe',
      ],
      [
        'caConfigMapRef with https_spiffe',
        {
          bundleEndpoint: {
            urls: ['https://p.example/'],
            profile: 'https_spiffe',
            endpointSPIFFEID: 'spiffe://p.example/server',
            caConfigMapRef: { namespace: 'spire', name: 'ca', key: 'ca.pem' },
          },
        },
        'caConfigMapRef is only valid with profile https_web',
      ],
      ['a bad duration', { refresh: { minInterval: 'soon' } }, 'spec.refresh.minInterval'],
      [
        'an unknown key type',
        { keyPolicy: { allowedKeyTypes: ['DSA'] } },
        'spec.keyPolicy.allowedKeyTypes[0]',
      ],
      ['a tiny RSA minimum', { keyPolicy: { minRSABits: 512 } }, 'spec.keyPolicy.minRSABits'],
    ])('rejects %s', async (_what, patch, expected) => {
      const base = federationPeer('invalid', 'partner.example');
      const msg = await rejectedBy({ ...base, spec: { ...base.spec, ...patch } });
      expect(msg).toContain(expected);
    });

    it('rejects a FederationPeer without spec', async () => {
      expect(
        await rejectedBy({
          apiVersion: 'spiffe-broker.dev/v1alpha1',
          kind: 'FederationPeer',
          metadata: { name: 'nospec' },
        }),
      ).toContain('spec');
    });

    it('rejects a status with an unknown state or a non-ERR reason pattern through the status subresource', async () => {
      const created = await api.create(FEDERATION_PEERS, federationPeer('status-schema', 'status.example'));
      const bad = api.replaceStatus(FEDERATION_PEERS, { ...created, status: { state: 'Happy' } });
      await expect(bad).rejects.toMatchObject({ code: 'ERR_K8S_INVALID' });
      const badReason = api.replaceStatus(FEDERATION_PEERS, {
        ...created,
        status: {
          conditions: [
            {
              type: 'Ready',
              status: 'True',
              reason: 'not a reason!',
              message: '',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
          ],
        },
      });
      await expect(badReason).rejects.toMatchObject({ code: 'ERR_K8S_INVALID' });
      await api.delete(FEDERATION_PEERS, 'status-schema');
    });

    it('accepts a full valid spec and serves the printer columns', async () => {
      const created = await api.create(FEDERATION_PEERS, {
        ...federationPeer('columns', 'columns.example'),
        spec: {
          trustDomain: 'columns.example',
          bundleEndpoint: {
            urls: ['https://a.columns.example:8443/bundle', 'https://b.columns.example/'],
            profile: 'https_spiffe',
            endpointSPIFFEID: 'spiffe://columns.example/spire/server',
            bootstrapBundleConfigMapRef: { namespace: 'spire', name: 'columns-bundle', key: 'bundle.json' },
          },
          refresh: { minInterval: '5s', maxInterval: '1h30m' },
          keyPolicy: {
            maxKeys: 20,
            allowedKeyTypes: ['EC', 'RSA'],
            allowedCurves: ['P-256'],
            minRSABits: 3072,
          },
          spireServers: ['main'],
          allowEmptyBundle: false,
        },
      });
      expect(created.metadata.generation).toBe(1);
      const table = await kube.request(
        'GET',
        '/apis/spiffe-broker.dev/v1alpha1/federationpeers/columns',
        undefined,
        {
          accept: 'application/json;as=Table;v=v1;g=meta.k8s.io',
        },
      );
      expect(table.status).toBe(200);
      const cols = (table.body.columnDefinitions as { name: string }[]).map((c) => c.name);
      expect(cols).toEqual(['Name', 'Trust Domain', 'State', 'Sequence', 'Last Success', 'Age']);
      const cells = (table.body.rows as { cells: unknown[] }[])[0]!.cells;
      expect(cells[1]).toBe('columns.example');
      await api.delete(FEDERATION_PEERS, 'columns');
    });
  });

  describe('CrdAllowlistSource', () => {
    function startSource(opts: Partial<ConstructorParameters<typeof CrdAllowlistSource>[0]> = {}) {
      const refs = new MemoryReferenceStore();
      const source = new CrdAllowlistSource({
        api,
        clock: systemClock,
        references: refs,
        parse: { localTrustDomain: 'example.org', serverNames: ['main', 'backup'] },
        resyncMs: 300,
        ...opts,
      });
      const emitted: Allowlist[] = [];
      source.subscribe((a) => emitted.push(a));
      const ac = new AbortController();
      const done = source.run(ac.signal);
      return {
        source,
        refs,
        emitted,
        tds: () => source.current()?.peers.map((p) => p.trustDomain.name) ?? [],
        stop: async () => {
          ac.abort();
          await done;
        },
      };
    }

    async function status(name: string): Promise<FederationPeerStatus | undefined> {
      return (await api.get(FEDERATION_PEERS, name))?.status as FederationPeerStatus | undefined;
    }

    const cleanup: string[] = [];
    afterAll(async () => {
      for (const n of cleanup) await api.delete(FEDERATION_PEERS, n).catch(() => {});
    });
    async function create(obj: KubeObject): Promise<KubeObject> {
      cleanup.push(obj.metadata.name);
      return api.create(FEDERATION_PEERS, obj);
    }

    it('emits valid peers, rejects the rest with Accepted=False and the parser code, and follows changes', async () => {
      await create(federationPeer('src-a', 'a.partner.example'));
      await create(federationPeer('src-self', 'example.org'));
      await create(federationPeer('src-unknown-server', 'c.partner.example', { spireServers: ['nope'] }));
      const s = startSource();
      try {
        const first = await s.source.waitForAllowlist(AbortSignal.timeout(15_000));
        expect(first.peers.map((p) => p.trustDomain.name)).toEqual(['a.partner.example']);
        expect(first.peers[0]!.urls[0]!.href).toBe('https://a.partner.example:8443/bundle');
        expect(s.source.rejected().map((r) => [r.name, r.code])).toEqual([
          ['src-self', 'ERR_CONFIG_LOCAL_TRUST_DOMAIN'],
          ['src-unknown-server', 'ERR_CONFIG_UNKNOWN_SERVER'],
        ]);
        const self = await eventually('Accepted=False on src-self', async () => {
          const st = await status('src-self');
          return st?.conditions?.find((c) => c.type === 'Accepted' && c.status === 'False') ? st : undefined;
        });
        expect(self.state).toBe('Invalid');
        const accepted = self.conditions!.find((c) => c.type === 'Accepted')!;
        expect(accepted.reason).toBe('ERR_CONFIG_LOCAL_TRUST_DOMAIN');
        expect(accepted.message).toContain('spec.trustDomain');
        expect(self.observedGeneration).toBe(1);
        const unknown = await eventually('Accepted=False on src-unknown-server', () =>
          status('src-unknown-server').then((st) => st?.conditions?.find((c) => c.type === 'Accepted')),
        );
        expect(unknown.message).toMatch(/^spec\.spireServers\[0\]: no SPIRE server named "nope"/);
        const a = await eventually('Accepted=True on src-a', async () => {
          const st = await status('src-a');
          return st?.conditions?.find((c) => c.type === 'Accepted' && c.status === 'True') ? st : undefined;
        });
        expect(a.state).toBe('Pending');

        // Fix the bad one: it joins; generation and the condition follow.
        const bad = (await api.get(FEDERATION_PEERS, 'src-unknown-server'))!;
        await api.replace(FEDERATION_PEERS, {
          ...bad,
          spec: { ...(bad.spec as object), spireServers: ['backup'] },
        });
        await eventually('fixed peer joins', () => s.tds().includes('c.partner.example'));
        expect(
          s.source.current()!.peers.find((p) => p.trustDomain.name === 'c.partner.example')!.targetServers,
        ).toEqual(['backup']);
        const fixed = await eventually('Accepted=True after the fix', async () => {
          const st = await status('src-unknown-server');
          return st?.conditions?.find((c) => c.type === 'Accepted' && c.status === 'True') ? st : undefined;
        });
        expect(fixed.observedGeneration).toBe(2);
        expect(fixed.state).toBe('Pending');

        // Delete: the peer leaves the allowlist.
        await api.delete(FEDERATION_PEERS, 'src-a');
        await eventually('deleted peer leaves', () => !s.tds().includes('a.partner.example'));
        expect(new Set(s.emitted.map((e) => e.version)).size).toBe(s.emitted.length);
      } finally {
        await s.stop();
        for (const n of ['src-self', 'src-unknown-server']) await api.delete(FEDERATION_PEERS, n);
      }
    });

    it('materialises an inline bootstrap bundle, and rejects an invalid one with the bundle parser code', async () => {
      const peer = await makePki('bootstrap.example');
      const bundleJson = marshalBundle(peer.bundle);
      const spec = (bootstrapBundle: string) => ({
        bundleEndpoint: {
          urls: ['https://bootstrap.example/'],
          profile: 'https_spiffe',
          endpointSPIFFEID: 'spiffe://bootstrap.example/spire/server',
          bootstrapBundle,
        },
      });
      await create(federationPeer('boot-ok', 'bootstrap.example', spec(bundleJson)));
      await create(
        federationPeer('boot-bad', 'bootstrap2.example', {
          ...spec('{"keys": 1}'),
          trustDomain: 'bootstrap2.example',
        }),
      );
      const s = startSource();
      try {
        const al = await s.source.waitForAllowlist(AbortSignal.timeout(15_000));
        const p = al.peers.find((x) => x.trustDomain.name === 'bootstrap.example')!;
        expect(p.profile.kind).toBe('https_spiffe');
        const file = p.profile.kind === 'https_spiffe' ? p.profile.bootstrapBundleFile : undefined;
        expect(file).toBeDefined();
        expect(s.refs.files.get(file!)).toBe(bundleJson);
        expect(s.source.rejected()).toEqual([
          expect.objectContaining({ name: 'boot-bad', code: 'ERR_BUNDLE_KEYS_NOT_ARRAY' }),
        ]);
        const st = await eventually('boot-bad condition', () =>
          status('boot-bad').then((x) => x?.conditions?.find((c) => c.type === 'Accepted')),
        );
        expect(st.message).toMatch(/^spec\.bundleEndpoint\.bootstrapBundle: /);
      } finally {
        await s.stop();
        await api.delete(FEDERATION_PEERS, 'boot-ok');
        await api.delete(FEDERATION_PEERS, 'boot-bad');
      }
    });

    it('reads a CA from a ConfigMap reference, rejecting until the ConfigMap exists (picked up on resync)', async () => {
      const ca = await makePki('ca-holder.example');
      await create(
        federationPeer('ca-ref', 'web.partner.example', {
          bundleEndpoint: {
            urls: ['https://web.partner.example/'],
            profile: 'https_web',
            caConfigMapRef: { namespace: 'default', name: 'partner-ca', key: 'ca.pem' },
          },
        }),
      );
      const s = startSource();
      try {
        await s.source.waitForAllowlist(AbortSignal.timeout(15_000));
        expect(s.source.rejected()).toEqual([
          expect.objectContaining({ name: 'ca-ref', code: 'ERR_K8S_REFERENCE' }),
        ]);
        expect(s.source.rejected()[0]!.message).toContain('ConfigMap default/partner-ca does not exist');
        await api.create(CONFIG_MAPS, {
          metadata: { name: 'partner-ca', namespace: 'default' },
          data: { 'ca.pem': ca.root.pem },
        });
        await eventually('peer accepted after the ConfigMap appears', () =>
          s.tds().includes('web.partner.example'),
        );
        const p = s.source.current()!.peers[0]!;
        const caFile = p.profile.kind === 'https_web' ? p.profile.caFile : undefined;
        expect(s.refs.files.get(caFile!)).toBe(ca.root.pem);
      } finally {
        await s.stop();
        await api.delete(FEDERATION_PEERS, 'ca-ref');
        await api.delete(CONFIG_MAPS, 'partner-ca', 'default');
      }
    });

    it("adopts ClusterFederatedTrustDomains of the broker's class; a FederationPeer wins a duplicate", async () => {
      const peer = await makePki('cftd.example');
      const cftd = (name: string, td: string, className?: string) => ({
        apiVersion: 'spire.spiffe.io/v1alpha1',
        kind: 'ClusterFederatedTrustDomain',
        metadata: { name },
        spec: {
          trustDomain: td,
          bundleEndpointURL: `https://${td}:8443`,
          bundleEndpointProfile: { type: 'https_spiffe', endpointSPIFFEID: `spiffe://${td}/spire/server` },
          trustDomainBundle: marshalBundle(peer.bundle),
          ...(className ? { className } : {}),
        },
      });
      await api.create(CLUSTER_FEDERATED_TRUST_DOMAINS, cftd('mine', 'cftd.example', 'spiffe-broker'));
      await api.create(CLUSTER_FEDERATED_TRUST_DOMAINS, cftd('theirs', 'other.example', 'spire-mgmt'));
      await api.create(CLUSTER_FEDERATED_TRUST_DOMAINS, cftd('classless', 'classless.example'));
      await create(federationPeer('dup-fp', 'dup.example'));
      await api.create(CLUSTER_FEDERATED_TRUST_DOMAINS, cftd('dup-cftd', 'dup.example', 'spiffe-broker'));
      const s = startSource({ clusterFederatedTrustDomains: {} });
      try {
        const al = await s.source.waitForAllowlist(AbortSignal.timeout(15_000));
        expect(al.peers.map((p) => p.trustDomain.name).sort()).toEqual(['cftd.example', 'dup.example']);
        const c = al.peers.find((p) => p.trustDomain.name === 'cftd.example')!;
        expect(c.urls.map((u) => u.href)).toEqual(['https://cftd.example:8443/']);
        expect(c.profile).toMatchObject({ kind: 'https_spiffe' });
        expect(c.targetServers).toBe('all');
        expect(s.source.rejected()).toEqual([
          expect.objectContaining({
            kind: 'ClusterFederatedTrustDomain',
            name: 'dup-cftd',
            code: 'ERR_CONFIG_DUPLICATE_PEER',
          }),
        ]);
        expect(s.source.objectFor('dup.example')?.metadata.name).toBe('dup-fp');
        expect(s.source.objectFor('cftd.example')).toBeUndefined();
      } finally {
        await s.stop();
      }
      const withClassless = startSource({ clusterFederatedTrustDomains: { includeClassless: true } });
      try {
        await eventually('classless adopted', () => withClassless.tds().includes('classless.example'));
        expect(withClassless.tds()).not.toContain('other.example');
      } finally {
        await withClassless.stop();
        for (const n of ['mine', 'theirs', 'classless', 'dup-cftd'])
          await api.delete(CLUSTER_FEDERATED_TRUST_DOMAINS, n);
        await api.delete(FEDERATION_PEERS, 'dup-fp');
      }
    });

    it('treats an absent ClusterFederatedTrustDomain CRD as empty and writes no status when not allowed', async () => {
      await api.delete(
        {
          group: 'apiextensions.k8s.io',
          version: 'v1',
          plural: 'customresourcedefinitions',
          kind: 'CustomResourceDefinition',
          namespaced: false,
        },
        'clusterfederatedtrustdomains.spire.spiffe.io',
      );
      await eventually('CFTD type gone', async () => {
        try {
          await api.list(CLUSTER_FEDERATED_TRUST_DOMAINS);
          return false;
        } catch (e) {
          return (e as KubeApiError).code === 'ERR_K8S_NOT_FOUND';
        }
      });
      await create(federationPeer('quiet', 'quiet.example'));
      const s = startSource({ clusterFederatedTrustDomains: {}, canWriteStatus: () => false });
      try {
        const al = await s.source.waitForAllowlist(AbortSignal.timeout(15_000));
        expect(al.peers.map((p) => p.trustDomain.name)).toEqual(['quiet.example']);
        expect(await status('quiet')).toBeUndefined();
      } finally {
        await s.stop();
      }
    });

    it('writes the daemon snapshot to status, retrying on a 409 conflict', async () => {
      await create(federationPeer('snap', 'snap.example'));
      const s = startSource();
      try {
        await eventually('snap accepted', () => s.source.objectFor('snap.example'));
        let replaceStatusCalls = 0;
        let interfered = false;
        const racing: KubeApi = {
          ...api,
          get: (...a) => api.get(...a),
          replace: (...a) => api.replace(...a),
          replaceStatus: async (t, o, sig) => {
            replaceStatusCalls++;
            if (!interfered) {
              // Another writer changes the object between our read and our write.
              interfered = true;
              const fresh = (await api.get(FEDERATION_PEERS, 'snap'))!;
              await api.replace(FEDERATION_PEERS, {
                ...fresh,
                metadata: { ...fresh.metadata, labels: { touched: 'yes' } },
              });
            }
            return api.replaceStatus(t, o, sig);
          },
        };
        const writer = new FederationPeerStatusWriter({
          api: racing,
          clock: { now: () => Date.parse('2026-11-23T12:00:00.700Z'), sleep: systemClock.sleep },
          lookup: (td) => s.source.objectFor(td),
        });
        const results = await writer.write({
          peers: [
            {
              trustDomain: 'snap.example',
              state: 'Stale',
              reason: { code: 'ERR_FETCH_CONNECT', message: 'connect ECONNREFUSED 10.0.0.7:8443' },
              sequence: 18446744073709551615n,
              lastSuccess: Date.parse('2026-11-23T11:58:00Z'),
              servers: [
                { name: 'main', synced: true, sequence: 18446744073709551615n },
                {
                  name: 'backup',
                  synced: false,
                  error: { code: 'ERR_SPIRE_UNAVAILABLE', message: 'connection refused' },
                },
              ],
            },
            { trustDomain: 'not-a-crd.example', state: 'Ready', servers: [] },
          ],
        });
        expect(results.get('snap.example')).toBe('written');
        expect(results.has('not-a-crd.example')).toBe(false);
        expect(replaceStatusCalls).toBeGreaterThanOrEqual(2);
        const st = (await status('snap'))!;
        expect(st.state).toBe('Stale');
        expect(st.sequence).toBe('18446744073709551615');
        expect(st.lastSuccess).toBe('2026-11-23T11:58:00Z');
        expect(st.servers).toEqual([
          { name: 'backup', synced: false, errorCode: 'ERR_SPIRE_UNAVAILABLE', error: 'connection refused' },
          { name: 'main', synced: true, sequence: '18446744073709551615' },
        ]);
        const byType = Object.fromEntries(st.conditions!.map((c) => [c.type, c]));
        expect(byType.Stale).toMatchObject({
          status: 'True',
          reason: 'ERR_FETCH_CONNECT',
          lastTransitionTime: '2026-11-23T12:00:00Z',
        });
        expect(byType.Ready).toMatchObject({ status: 'False', reason: 'Stale' });
        expect(byType.Accepted).toMatchObject({ status: 'True' });
        // Same snapshot again: nothing to write.
        const again = await writer.write({
          peers: [
            {
              trustDomain: 'snap.example',
              state: 'Stale',
              reason: { code: 'ERR_FETCH_CONNECT', message: 'connect ECONNREFUSED 10.0.0.7:8443' },
              sequence: 18446744073709551615n,
              lastSuccess: Date.parse('2026-11-23T11:58:00Z'),
              servers: [
                { name: 'main', synced: true, sequence: 18446744073709551615n },
                {
                  name: 'backup',
                  synced: false,
                  error: { code: 'ERR_SPIRE_UNAVAILABLE', message: 'connection refused' },
                },
              ],
            },
          ],
        });
        // The source may have re-read the object meanwhile; either way the status is already there.
        expect(['unchanged', 'written']).toContain(again.get('snap.example'));
        const table = await kube.request(
          'GET',
          '/apis/spiffe-broker.dev/v1alpha1/federationpeers/snap',
          undefined,
          {
            accept: 'application/json;as=Table;v=v1;g=meta.k8s.io',
          },
        );
        const cells = (table.body.rows as { cells: unknown[] }[])[0]!.cells;
        expect(cells.slice(1, 5)).toEqual([
          'snap.example',
          'Stale',
          '18446744073709551615',
          expect.any(String),
        ]);
      } finally {
        await s.stop();
        await api.delete(FEDERATION_PEERS, 'snap');
      }
    });
  });
});
