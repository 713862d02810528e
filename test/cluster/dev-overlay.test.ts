/**
 * deploy/overlays/dev as pods on a real cluster: kind v0.33 with Kubernetes v1.36.3 on the offline
 * node image, a real SPIRE server for the local trust domain (socket on the node, as deploy/base
 * expects), a real SPIRE server as the federated peer, and the product image — nothing pulled.
 *
 * What it proves, each against kubelet, the API server and SPIRE themselves:
 *   - `kubectl apply -k deploy/overlays/dev` is admitted; under the restricted Pod Security
 *     Standard the only violation is the SPIRE socket's hostPath (documented in deploy/base);
 *   - the broker pod becomes Ready through its startup/readiness probes;
 *   - a FederationPeer makes the peer's bundle reach the local SPIRE server and the bundle
 *     ConfigMaps of a labelled namespace, with status conditions;
 *   - a container killed while the peer is down comes back with its last-known-good bundle (the
 *     emptyDir state volume survives container restarts, as the manifests say) and SPIRE keeps it;
 *   - two replicas elect one leader over a real Lease; deleting the leader's pod hands over: the old
 *     one releases the Lease as it stops, the new one writes;
 *   - the shipped ValidatingAdmissionPolicy (deploy/components/admission-policy), with this
 *     cluster's rules in its params, refuses FederationPeers that break them and admits the rest.
 * Timings of each step are printed (docs/kubernetes.md quotes them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, PRODUCT_IMAGE, SPIRE_IMAGE } from '../container/docker.js';
import { clusterOrSkip, KindCluster, REPO } from './kind.js';

const available = await clusterOrSkip('deploy/overlays/dev on kind', [PRODUCT_IMAGE, SPIRE_IMAGE]);

const NS = 'spiffe-broker';
const PEER_TD = 'peer.example.org';
const BROKER_PODS = ['-n', NS, '-l', 'app.kubernetes.io/component=broker'];
const timings: Record<string, number> = {};
let cluster: KindCluster;
let applyWarnings: string[] = [];

/** Polls `check` every second until it returns true, at most `ms`. */
async function until(what: string, check: () => Promise<boolean>, ms = 120_000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await check()) return Date.now() - t0;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    timings[name] = Date.now() - t0;
  }
}

interface Pod {
  metadata: { name: string; deletionTimestamp?: string };
  status: {
    conditions?: { type: string; status: string }[];
    containerStatuses?: { name: string; ready: boolean; restartCount: number }[];
  };
}
const isReady = (p: Pod) =>
  p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

async function brokerPods(): Promise<Pod[]> {
  return (await cluster.json<{ items: Pod[] }>(['pods', ...BROKER_PODS])).items.filter(
    (p) => !p.metadata.deletionTimestamp,
  );
}

/** The X.509 authorities (x5c[0]) of a SPIFFE bundle document, sorted. */
function x509Of(doc: string): string[] {
  const keys = (JSON.parse(doc) as { keys?: { use?: string; x5c?: string[] }[] }).keys ?? [];
  return keys
    .filter((k) => k.use === 'x509-svid')
    .map((k) => k.x5c?.[0] ?? '')
    .sort();
}

async function peerBundle(): Promise<string> {
  return cluster.kubectlOk([
    '-n',
    'peer',
    'exec',
    'spire-server-0',
    '--',
    '/usr/local/bin/spire-server',
    'bundle',
    'show',
    '-format',
    'spiffe',
    '-socketPath',
    '/run/spire/sockets/api.sock',
  ]);
}

/** The bundle the local SPIRE server holds for the peer, or undefined. */
async function localSpireHolds(): Promise<string | undefined> {
  const r = await cluster.kubectl([
    '-n',
    'spire-server',
    'exec',
    'spire-server-0',
    '--',
    '/usr/local/bin/spire-server',
    'bundle',
    'list',
    '-id',
    `spiffe://${PEER_TD}`,
    '-format',
    'spiffe',
    '-socketPath',
    '/run/spire/server-sockets/api.sock',
  ]);
  return r.code === 0 && r.stdout.includes('"keys"') ? r.stdout : undefined;
}

/** The broker pod's Prometheus metrics, through the API server's pod proxy. */
async function metrics(pod: string): Promise<string> {
  return cluster.kubectlOk(['get', '--raw', `/api/v1/namespaces/${NS}/pods/${pod}:8088/proxy/metrics`]);
}

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function lease(): Promise<{ holder?: string; transitions: number }> {
  const l = await cluster.json<{ spec: { holderIdentity?: string; leaseTransitions?: number } }>([
    'lease',
    '-n',
    NS,
    'spiffe-broker',
  ]);
  return {
    ...(l.spec.holderIdentity ? { holder: l.spec.holderIdentity } : {}),
    transitions: l.spec.leaseTransitions ?? 0,
  };
}

describe.skipIf(!available)('deploy/overlays/dev on a real cluster (kind, Kubernetes v1.36.3)', () => {
  beforeAll(async () => {
    cluster = await timed('kind create cluster', () => KindCluster.create('sb-dev'));
    await timed('kind load docker-image (product, SPIRE)', () => cluster.load([PRODUCT_IMAGE, SPIRE_IMAGE]));
    await timed('SPIRE servers Ready', async () => {
      await cluster.kubectlOk(['apply', '-f', `${REPO}/test/cluster/fixtures/spire.yaml`]);
      for (const ns of ['spire-server', 'peer'])
        await cluster.kubectlOk(
          ['-n', ns, 'rollout', 'status', 'statefulset/spire-server', '--timeout=180s'],
          {
            timeoutMs: 200_000,
          },
        );
    });
    const applied = await timed('kubectl apply -k deploy/overlays/dev', () =>
      cluster.kubectl(['apply', '-k', `${REPO}/deploy/overlays/dev`]),
    );
    if (applied.code !== 0) throw new Error(`apply -k deploy/overlays/dev failed:\n${applied.stderr}`);
    applyWarnings = applied.stderr.split('\n').filter((l) => l.startsWith('Warning:'));
  }, 600_000);

  afterAll(async () => {
    console.log(
      `cluster suite timings (ms):\n${Object.entries(timings)
        .map(([k, v]) => `  ${k}: ${v}`)
        .join('\n')}`,
    );
    await cluster?.delete();
  }, 180_000);

  it('is admitted; under restricted Pod Security the only violation is the SPIRE socket hostPath', async () => {
    expect(applyWarnings).toHaveLength(1);
    expect(applyWarnings[0]).toMatch(
      /restricted volume types \(volume "spire-server-socket" uses restricted volume type "hostPath"\)$/,
    );
    const np = await cluster.json<{ spec: { podSelector: unknown; policyTypes: string[] } }>([
      'networkpolicy',
      '-n',
      NS,
      'spiffe-broker',
    ]);
    expect(np.spec.policyTypes).toEqual(expect.arrayContaining(['Ingress']));
  });

  it('the broker pod becomes Ready through its probes', async () => {
    await timed('broker pod Ready', () =>
      until('a Ready broker pod', async () => (await brokerPods()).some(isReady), 180_000),
    );
    const [pod] = await brokerPods();
    expect(pod?.status.containerStatuses?.[0]?.restartCount).toBe(0);
    const readyz = await cluster.kubectl([
      'get',
      '--raw',
      `/api/v1/namespaces/${NS}/pods/${pod!.metadata.name}:8088/proxy/readyz`,
    ]);
    expect(readyz.code).toBe(0);
  }, 200_000);

  it('a FederationPeer brings the peer bundle to SPIRE and to the labelled namespace, with status', async () => {
    const bundle = await peerBundle();
    const indented = bundle
      .trim()
      .split('\n')
      .map((l) => `      ${l}`)
      .join('\n');
    await cluster.kubectlOk(['apply', '-f', '-'], {
      input: `apiVersion: spiffe-broker.dev/v1alpha1
kind: FederationPeer
metadata:
  name: peer-example-org
spec:
  trustDomain: ${PEER_TD}
  bundleEndpoint:
    urls: [https://spire-server.peer.svc.cluster.local:8443]
    profile: https_spiffe
    endpointSPIFFEID: spiffe://${PEER_TD}/spire/server
    bootstrapBundle: |
${indented}
`,
    });
    await timed('FederationPeer -> bundle in SPIRE', () =>
      until('the peer bundle in the local SPIRE server', async () => (await localSpireHolds()) !== undefined),
    );
    expect(x509Of((await localSpireHolds())!)).toEqual(x509Of(bundle));
    await until('FederationPeer Ready', async () => {
      const fp = await cluster.json<{ status?: { state?: string } }>(['federationpeer', 'peer-example-org']);
      return fp.status?.state === 'Ready';
    });
    const fp = await cluster.json<{
      status: {
        sequence: string;
        conditions: { type: string; status: string }[];
        servers: { name: string; synced: boolean }[];
      };
    }>(['federationpeer', 'peer-example-org']);
    expect(fp.status.conditions).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ type: 'Accepted', status: 'True' }),
        expect.objectContaining({ type: 'Ready', status: 'True' }),
        expect.objectContaining({ type: 'Revoked', status: 'False' }),
      ]),
    );
    expect(fp.status.servers).toEqual([expect.objectContaining({ name: 'main', synced: true })]);
    await until('the bundle ConfigMap in namespace demo', async () => {
      const r = await cluster.kubectl(['-n', 'demo', 'get', 'configmap', 'spiffe-bundle-peer-example-org']);
      return r.code === 0;
    });
    const cm = await cluster.json<{ data: Record<string, string> }>([
      'configmap',
      '-n',
      'demo',
      'spiffe-bundle-peer-example-org',
    ]);
    const spiffeDoc = Object.values(cm.data).find((v) => v.includes('"keys"'));
    expect(spiffeDoc).toBeDefined();
    expect(x509Of(spiffeDoc!)).toEqual(x509Of(bundle));
  }, 200_000);

  it('a container killed while the peer is down comes back with its last-known-good bundle', async () => {
    await cluster.kubectlOk(['-n', 'peer', 'scale', 'statefulset/spire-server', '--replicas=0']);
    await until('the peer SPIRE server gone', async () => {
      const r = await cluster.kubectl(['-n', 'peer', 'get', 'pod', 'spire-server-0']);
      return r.code !== 0;
    });
    const [pod] = await brokerPods();
    const name = pod!.metadata.name;
    const ids = (
      await docker([
        'exec',
        cluster.node,
        'crictl',
        'ps',
        '-q',
        '--name',
        'spiffe-broker',
        '--label',
        `io.kubernetes.pod.name=${name}`,
      ])
    ).stdout.trim();
    expect(ids).toMatch(/^[0-9a-f]+$/);
    // SIGKILL at once: a crash, not a graceful stop.
    expect((await docker(['exec', cluster.node, 'crictl', 'stop', '--timeout', '0', ids])).code).toBe(0);
    await timed('killed container Ready again (peer down)', () =>
      until('the restarted container Ready', async () => {
        const p = (await brokerPods()).find((x) => x.metadata.name === name);
        const cs = p?.status.containerStatuses?.[0];
        return cs !== undefined && cs.restartCount >= 1 && cs.ready;
      }),
    );
    const m = await metrics(name);
    // The new process has fetched nothing (the peer is down) yet holds the peer's bundle: read back
    // from the state directory, and SPIRE still has it.
    expect(
      metric(m, `spiffe_broker_bundle_fetch_total{peer="${PEER_TD}",result="updated",reason="none"}`) ?? 0,
    ).toBe(0);
    expect(metric(m, `spiffe_broker_bundle_sequence{trust_domain="${PEER_TD}"}`)).toBeGreaterThanOrEqual(1);
    expect(await localSpireHolds()).toBeDefined();
    const fp = await cluster.json<{ status: { state: string } }>(['federationpeer', 'peer-example-org']);
    expect(fp.status.state).not.toBe('Revoked');
    await cluster.kubectlOk(['-n', 'peer', 'scale', 'statefulset/spire-server', '--replicas=1']);
  }, 200_000);

  it('two replicas elect one leader over a Lease; deleting the leader hands over', async () => {
    await cluster.kubectlOk(['-n', NS, 'scale', 'deployment/spiffe-broker', '--replicas=2']);
    await timed('second replica Ready', () =>
      until('two Ready broker pods', async () => (await brokerPods()).filter(isReady).length === 2, 180_000),
    );
    const before = await lease();
    const pods = (await brokerPods()).map((p) => p.metadata.name);
    expect(pods).toContain(before.holder);
    const old = before.holder!;
    const follower = pods.find((p) => p !== old)!;
    expect(await cluster.kubectlOk(['-n', NS, 'logs', follower])).not.toContain('leading: writing');

    // Something the new leader must write: a bundle ConfigMap removed by hand just before the
    // handover (the old leader repairs such drift only at its next full resync, minutes away).
    await cluster.kubectlOk(['-n', 'demo', 'delete', 'configmap', 'spiffe-bundle-peer-example-org']);
    const oldLogs = cluster.followLogs(NS, old);
    await new Promise((r) => setTimeout(r, 1000));
    await cluster.kubectlOk(['-n', NS, 'delete', 'pod', old, '--wait=false']);
    const handover = await timed('leader pod deleted -> new Lease holder', () =>
      until('a new Lease holder', async () => {
        const l = await lease();
        return l.holder !== undefined && l.holder !== old;
      }),
    );
    expect(handover).toBeGreaterThanOrEqual(0);
    const after = await lease();
    expect(after.transitions).toBeGreaterThan(before.transitions);
    // The old leader stopped writing and released the Lease on its way out.
    const printed = await oldLogs;
    expect(printed).toContain('stopped leading');
    expect(printed).toContain('lease released');
    // The new leader writes: its first pass puts the ConfigMap back.
    await timed('new leader rewrites the deleted bundle ConfigMap', () =>
      until('the ConfigMap written again', async () => {
        const r = await cluster.kubectl(['-n', 'demo', 'get', 'configmap', 'spiffe-bundle-peer-example-org']);
        return r.code === 0;
      }),
    );
    expect(await cluster.kubectlOk(['-n', NS, 'logs', after.holder!])).toContain('leading: writing');
  }, 400_000);

  it('the shipped admission policy refuses FederationPeers that break the rules, admits the rest', async () => {
    const policy = `${REPO}/deploy/components/admission-policy/admission-policy.yaml`;
    await cluster.kubectlOk(['apply', '-f', policy]);
    // This cluster's rules: its own trust domain, peers under example.org only, pinned CAs.
    await cluster.kubectlOk([
      '-n',
      NS,
      'patch',
      'configmap',
      'spiffe-broker-admission',
      '--type=merge',
      '-p',
      JSON.stringify({
        data: {
          localTrustDomain: 'dev.example.org',
          allowedTrustDomainSuffixes: 'example.org',
          requirePinnedCA: 'true',
        },
      }),
    ]);
    const peer = (name: string, td: string, endpoint: string) => `apiVersion: spiffe-broker.dev/v1alpha1
kind: FederationPeer
metadata:
  name: ${name}
spec:
  trustDomain: ${td}
  bundleEndpoint:
    urls: [https://bundles.${td}/]
${endpoint}
`;
    const create = (doc: string) =>
      cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { input: doc });
    const spiffe = `    profile: https_spiffe
    endpointSPIFFEID: spiffe://PEER/spire/server`;
    const outside = peer('outside', 'evil.test', spiffe.replace('PEER', 'evil.test'));
    // The policy becomes active a moment after it is created.
    await timed('admission policy active', () =>
      until(
        'the policy refusing a peer outside example.org',
        async () => (await create(outside)).code !== 0,
        60_000,
      ),
    );
    const refusedOutside = await create(outside);
    expect(refusedOutside.stderr).toMatch(/spiffe-broker-federationpeers/);
    const own = await create(peer('own', 'dev.example.org', spiffe.replace('PEER', 'dev.example.org')));
    expect(own.code).not.toBe(0);
    const systemRoots = await create(peer('web', 'web.example.org', '    profile: https_web'));
    expect(systemRoots.code).not.toBe(0);
    const good = await create(
      peer('good', 'partner.example.org', spiffe.replace('PEER', 'partner.example.org')),
    );
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
    // The existing peer stays, and its status is still the broker's to write (status writes are not
    // matched). (It is Failing by now, rightly: the peer SPIRE restarted earlier with a new CA, which
    // the bundle the broker holds cannot verify.)
    const fp = await cluster.json<{
      status: { state: string; conditions: { type: string; status: string }[] };
    }>(['federationpeer', 'peer-example-org']);
    expect(fp.status.state).not.toBe('Revoked');
    expect(fp.status.conditions).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: 'Accepted', status: 'True' })]),
    );
  }, 120_000);
});
