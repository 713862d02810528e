/**
 * The broker daemon in Kubernetes mode against a REAL kube-apiserver + etcd: the allowlist comes
 * from FederationPeer objects, two replicas elect a leader on a Lease, only the leader writes to
 * SPIRE, bundle ConfigMaps and FederationPeer status; deleting the FederationPeer revokes.
 * The peer is a broker of the lab (SPIRE emulator) serving beta.lab's bundle over https_spiffe.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLUSTER_TRUST_BUNDLES,
  CONFIG_MAPS,
  FEDERATION_PEERS,
  type KubeApi,
  NAMESPACES,
} from '../../src/adapters/k8s/index.js';
import { SpireServerClient } from '../../src/adapters/spire/client.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/index.js';
import { marshalBundle } from '../../src/core/bundle/index.js';
import { BrokerDaemon } from '../../src/daemon/daemon.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';
import { Lab } from '../../src/lab/lab.js';
import { apiFor, CRD_FEDERATION_PEER } from '../adapters/k8s/helpers.js';
import { type KubeHarness, kubeAvailable, startKube } from '../support/kube-harness.js';

describe.skipIf(!kubeAvailable())('broker daemon on Kubernetes (real kube-apiserver)', () => {
  let kube: KubeHarness;
  let api: KubeApi;
  let lab: Lab;
  let spire: SpireEmulator;
  let client: SpireServerClient;
  let dir: string;
  const stop = new AbortController();
  const replicas: BrokerDaemon[] = [];
  const runs: Promise<void>[] = [];

  beforeAll(async () => {
    [kube, lab] = await Promise.all([
      startKube({
        manifests: [CRD_FEDERATION_PEER],
        // ClusterTrustBundles are beta and off by default in kube-apiserver 1.36.
        apiserverArgs: [
          '--feature-gates=ClusterTrustBundle=true',
          '--runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true',
        ],
      }),
      Lab.start({ trustDomains: ['beta.lab'], spire: 'emulator' }),
    ]);
    api = apiFor(kube);
    dir = await mkdtemp(join(tmpdir(), 'k8sd-'));
    spire = new SpireEmulator({ trustDomain: 'delta.lab', socketPath: join(dir, 'api.sock') });
    const ep = await spire.start();
    client = new SpireServerClient({ address: ep.address });
    await writeFile(join(dir, 'kubeconfig'), kube.kubeconfig);
    await writeFile(
      join(dir, 'allowlist.yaml'),
      'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n',
    );
    await api.create(NAMESPACES, {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'apps', labels: { 'spiffe-broker.dev/bundles': 'enabled' } },
    });
    for (const name of ['replica-1', 'replica-2']) {
      const yaml = `apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: delta.lab
stateDir: ${join(dir, name)}
spire:
  servers:
    - name: spire
      address: ${ep.address}
allowlist: { file: ${join(dir, 'allowlist.yaml')} }
admin: { listen: 127.0.0.1:0 }
verify: { listen: 127.0.0.1:0 }
kubernetes:
  credentials: { kubeconfigFile: ${join(dir, 'kubeconfig')} }
  allowlist: { resync: 2s }
  bundleConfigMaps: { namespaceSelector: spiffe-broker.dev/bundles=enabled, resync: 2s }
  clusterTrustBundles: { resync: 2s }
  leaderElection: { namespace: default, leaseName: delta-broker, leaseDuration: 4s, renewDeadline: 3s, retryPeriod: 500ms }
`;
      const d = await BrokerDaemon.create(parseBrokerConfig(yaml), { env: { POD_NAME: name } });
      replicas.push(d);
      runs.push(d.run(stop.signal));
    }
  }, 120_000);

  afterAll(async () => {
    stop.abort();
    await Promise.allSettled(runs);
    client?.close();
    await spire?.stop();
    await lab?.stop();
    await kube?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function deltaHolds(td: string): Promise<boolean> {
    return (await client.listFederatedBundles()).some((b) => b.trustDomain.name === td);
  }

  it('a FederationPeer is federated into SPIRE by the leader only, with ConfigMaps and status', async () => {
    const beta = lab.domain('beta.lab');
    await api.create(FEDERATION_PEERS, {
      apiVersion: 'spiffe-broker.dev/v1alpha1',
      kind: 'FederationPeer',
      metadata: { name: 'beta' },
      spec: {
        trustDomain: 'beta.lab',
        bundleEndpoint: {
          urls: [beta.endpointUrl],
          profile: 'https_spiffe',
          endpointSPIFFEID: beta.endpointSpiffeId,
          bootstrapBundle: marshalBundle(await beta.spire.bundle()),
        },
      },
    });
    await Lab.until(() => deltaHolds('beta.lab'), 30_000, 'delta SPIRE to hold beta.lab');
    const leaders = replicas.filter((r) => r.view.isLeader());
    expect(leaders).toHaveLength(1);
    // Both replicas read the allowlist and hold the bundle (both serve verification); one writes.
    await Lab.until(
      () => replicas.every((r) => r.store.get('beta.lab') !== undefined),
      10_000,
      'both replicas to hold beta',
    );

    const cm = await Lab.until(
      async () =>
        (await api.get(CONFIG_MAPS, 'spiffe-bundle-beta-lab', 'apps').catch(() => undefined)) !== undefined,
      20_000,
      'the bundle ConfigMap',
    );
    expect(cm).toBeGreaterThanOrEqual(0);
    const obj = (await api.get(CONFIG_MAPS, 'spiffe-bundle-beta-lab', 'apps')) as {
      data?: Record<string, string>;
      metadata?: { labels?: Record<string, string> };
    };
    expect(obj.data?.['bundle.pem']).toContain('BEGIN CERTIFICATE');
    expect(obj.metadata?.labels?.['spiffe-broker.dev/trust-domain']).toBe('beta.lab');

    // The ClusterTrustBundle of beta.lab, with the same roots as the ConfigMap.
    const ctbName = 'spiffe-broker.dev:federation:beta.lab';
    await Lab.until(
      async () => (await api.get(CLUSTER_TRUST_BUNDLES, ctbName).catch(() => undefined)) !== undefined,
      20_000,
      'the ClusterTrustBundle',
    );
    const ctb = (await api.get(CLUSTER_TRUST_BUNDLES, ctbName))!;
    expect(ctb.spec).toEqual({
      signerName: 'spiffe-broker.dev/federation',
      trustBundle: obj.data?.['bundle.pem'],
    });
    expect(ctb.metadata.labels?.['spiffe-broker.dev/trust-domain']).toBe('beta.lab');

    await Lab.until(
      async () => {
        const fp = (await api.get(FEDERATION_PEERS, 'beta')) as {
          status?: { conditions?: { type: string; status: string }[] };
        };
        return fp.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
      },
      20_000,
      'FederationPeer Ready=True',
    );
  }, 90_000);

  it('deleting the FederationPeer revokes: SPIRE and the ConfigMap lose the bundle', async () => {
    await api.delete(FEDERATION_PEERS, 'beta');
    await Lab.until(async () => !(await deltaHolds('beta.lab')), 30_000, 'revocation from SPIRE');
    await Lab.until(
      async () =>
        (await api.get(CONFIG_MAPS, 'spiffe-bundle-beta-lab', 'apps').catch(() => undefined)) === undefined,
      20_000,
      'the ConfigMap to be removed',
    );
    await Lab.until(
      async () =>
        (await api.get(CLUSTER_TRUST_BUNDLES, 'spiffe-broker.dev:federation:beta.lab')) === undefined,
      20_000,
      'the ClusterTrustBundle to be removed',
    );
  }, 60_000);
});
