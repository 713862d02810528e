/**
 * The kind lab's script and manifests without a cluster (its offline mode runs end to end in CI,
 * `.ci/run` → scripts/ci-kind-lab.sh): the scripts are shellcheck-clean and --dry-run prints the
 * whole plan of either mode without any tool; the lab's
 * kustomizations render; they, the example services and the broker container of the SPIRE chart
 * values pass the real kube-apiserver's validation (dry run, strict fields, restricted Pod
 * Security); the broker configs parse with the broker's parsers; the RBAC is the base's, bound to
 * the SPIRE server's service account.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parseKubernetesSettings } from '../../src/adapters/k8s/index.js';
import { parseAllowlist, parseBrokerConfig } from '../../src/engine/config/index.js';
import { collectionPath, type KubeHarness, kubeAvailable, startKube } from '../support/kube-harness.js';
import { type KubeDoc, kustomizeRenderer, render } from './kustomize.js';

const SCRIPTS = [
  ...readdirSync('scripts')
    .filter((f) => f.endsWith('.sh'))
    .map((f) => `scripts/${f}`),
  ...readdirSync('scripts/kind')
    .filter((f) => f.endsWith('.sh') || f === 'runc-drop-sys-resource')
    .map((f) => `scripts/kind/${f}`),
  '.ci/run',
];
const haveShellcheck = spawnSync('shellcheck', ['--version'], { stdio: 'ignore' }).status === 0;

describe('scripts', () => {
  // .ci/run installs shellcheck (Debian's package): in CI a missing shellcheck is a failure.
  it.skipIf(!haveShellcheck && process.env.CI !== 'true')('are shellcheck-clean', () => {
    expect(haveShellcheck, 'shellcheck is installed').toBe(true);
    expect(SCRIPTS.length).toBeGreaterThan(8);
    const r = spawnSync('shellcheck', ['--severity=style', ...SCRIPTS], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
  if (!haveShellcheck) console.warn('\n*** shellcheck not installed: the shell scripts are not linted ***\n');

  /** `kind-lab.sh <args> --dry-run` with bash and coreutils only on PATH: its plan and step numbers. */
  function dryRun(...args: string[]): { out: string; steps: number[] } {
    const r = spawnSync('bash', ['scripts/kind-lab.sh', ...args, '--dry-run'], {
      encoding: 'utf8',
      env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    return { out: r.stdout, steps: [...r.stdout.matchAll(/^==> (\d+)\. (.*)$/gm)].map((m) => Number(m[1])) };
  }

  it('kind-lab.sh --dry-run prints every step and needs none of the tools', () => {
    // No docker, kind, kubectl or helm on PATH.
    const { out, steps } = dryRun();
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const expected of [
      /^\+ docker build -t spiffe-broker:lab /m,
      /^\+ kind create cluster --name spiffe-broker-a /m,
      /^\+ kind create cluster --name spiffe-broker-b /m,
      /^\+ kind load docker-image spiffe-broker:lab --name spiffe-broker-b$/m,
      /^\+ helm --kube-context kind-spiffe-broker-a upgrade --install spire-crds spire-crds --repo https:\/\/spiffe\.github\.io\/helm-charts-hardened\/ /m,
      /^\+ helm --kube-context kind-spiffe-broker-b upgrade --install spire spire --repo https:\/\/spiffe\.github\.io\/helm-charts-hardened\/ .*--values \S+\/deploy\/kind\/spire-values\.yaml --values \S+\/deploy\/kind\/b\/spire-values\.yaml/m,
      /^\+ kubectl --context kind-spiffe-broker-a apply -k \S+\/deploy\/kind\/a$/m,
      /^\+ kubectl --context kind-spiffe-broker-b wait --for=condition=Ready federationpeer\/a-broker-test /m,
      /^\+ kubectl --context kind-spiffe-broker-b -n mtls-demo wait --for=condition=Complete job\/mtls-client /m,
    ]) {
      expect(out).toMatch(expected);
    }
    // The FederationPeers it would apply are well-formed, one per direction.
    const peers = [...out.matchAll(/apply -f - <<EOF\n([\s\S]*?)\nEOF/g)]
      .map((m) => parse(m[1]!) as KubeDoc)
      .filter((d) => d.kind === 'FederationPeer');
    expect(peers.map((p) => (p.spec as { trustDomain: string }).trustDomain)).toEqual([
      'b.broker.test',
      'a.broker.test',
    ]);
    expect((peers[0]!.spec as { bundleEndpoint: { profile: string } }).bundleEndpoint.profile).toBe(
      'https_spiffe',
    );
  });

  it('kind-lab.sh --offline --dry-run: everything built here and kind-loaded, no Helm, SPIRE from deploy/kind/offline', () => {
    const { out, steps } = dryRun('--offline');
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(out).not.toMatch(/helm|ghcr\.io|docker\.io|registry\.k8s\.io/);
    for (const expected of [
      /^\+ bash \S+\/scripts\/kind\/node-image\.sh$/m,
      /^\+ kind create cluster --name spiffe-broker-a --image spiffe-broker\/kind-node:v1\.36\.3 --config \S+\/deploy\/kind\/cluster-offline\.yaml /m,
      /^\+ kind load docker-image spiffe-broker:lab spiffe-broker\/spire-server:1\.15\.3 spiffe-broker\/spire-agent:1\.15\.3 spiffe-broker\/mtls-demo:lab --name spiffe-broker-b$/m,
      /^\+ kubectl --context kind-spiffe-broker-b apply -k \S+\/deploy\/kind\/offline$/m,
      /^\+ spire_cli b entry create -parentID spiffe:\/\/b\.broker\.test\/lab-node -spiffeID spiffe:\/\/b\.broker\.test\/ns\/mtls-demo\/sa\/mtls-client -selector k8s:ns:mtls-demo -selector k8s:sa:mtls-client -federatesWith spiffe:\/\/a\.broker\.test$/m,
      /^\+ kubectl --context kind-spiffe-broker-b -n mtls-demo wait --for=condition=Complete job\/mtls-intruder /m,
      /^\+ spire_cli a localauthority jwt prepare -output json$/m,
    ]) {
      expect(out).toMatch(expected);
    }
  });

  it('kind-lab.sh --down --dry-run deletes both clusters; unknown arguments are refused', () => {
    const down = spawnSync('bash', ['scripts/kind-lab.sh', '--down', '--dry-run'], { encoding: 'utf8' });
    expect(down.status).toBe(0);
    expect(down.stdout).toContain('+ kind delete cluster --name spiffe-broker-a');
    expect(down.stdout).toContain('+ kind delete cluster --name spiffe-broker-b');
    const bad = spawnSync('bash', ['scripts/kind-lab.sh', '--bogus'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
  });
});

const haveRenderer = kustomizeRenderer() !== undefined;

describe.skipIf(!haveRenderer)('deploy/kind', () => {
  const lab = new Map<string, KubeDoc[]>();
  const values = parse(readFileSync('deploy/kind/spire-values.yaml', 'utf8')) as {
    'spire-server': {
      extraContainers: Record<string, unknown>[];
      extraVolumes: { name: string }[];
    };
  };
  beforeAll(() => {
    for (const c of ['a', 'b']) lab.set(c, render(`deploy/kind/${c}`));
  });

  it.each(['a', 'b'])('cluster %s: its broker config is accepted and fits the sidecar container', (c) => {
    const cm = lab.get(c)!.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'spiffe-broker-config')!;
    expect(cm.metadata.namespace).toBe('spire-server');
    const data = cm.data as Record<string, string>;
    const config = parseBrokerConfig(data['config.yaml']!);
    expect(config.trustDomain.name).toBe(`${c}.broker.test`);
    expect(parseAllowlist(data['allowlist.yaml']!).peers).toEqual([]);
    const settings = parseKubernetesSettings(config.kubernetes!);
    expect(settings.leaderElection?.namespace).toBe('spire-server');
    const container = values['spire-server'].extraContainers[0] as {
      volumeMounts: { name: string; mountPath: string }[];
      ports: { containerPort: number }[];
    };
    const socketMount = container.volumeMounts.find((m) => m.name === 'spire-server-socket')!;
    expect(config.spire.servers[0]!.address).toBe(`unix://${socketMount.mountPath}/api.sock`);
    expect(container.ports.map((p) => p.containerPort)).toEqual([
      config.endpoint!.listen.port,
      config.probe.listen!.port,
    ]);
    const svc = lab.get(c)!.find((d) => d.kind === 'Service' && d.metadata.name === 'spiffe-broker-bundle')!;
    expect((svc.spec as { ports: { targetPort: number }[] }).ports[0]!.targetPort).toBe(
      config.endpoint!.listen.port,
    );
  });

  it('binds exactly the base RBAC rules to the SPIRE server service account', () => {
    const base = render('deploy/base');
    const rules = (docs: KubeDoc[]) =>
      docs
        .filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role')
        .map((d) => [d.kind, d.metadata.name, d.rules])
        .sort((x, y) => String(x[1]).localeCompare(String(y[1])));
    expect(rules(lab.get('a')!)).toEqual(rules(base));
    for (const b of lab.get('a')!.filter((d) => d.kind.endsWith('Binding'))) {
      expect(b.subjects).toEqual([
        { kind: 'ServiceAccount', name: 'spire-server', namespace: 'spire-server' },
      ]);
    }
    const bundleBinding = lab
      .get('a')!
      .find((d) => d.kind === 'RoleBinding' && d.metadata.name === 'spiffe-broker-bundle-configmaps');
    expect(bundleBinding?.metadata.namespace).toBe('mtls-demo');
  });

  describe.skipIf(!kubeAvailable())('against a real kube-apiserver', () => {
    let kube: KubeHarness;
    beforeAll(async () => {
      kube = await startKube({ manifests: ['deploy/base/crd-federationpeer.yaml'] });
      for (const [ns, level] of [
        ['spire-server', 'restricted'],
        ['mtls-demo', 'restricted'],
      ] as const) {
        await kube.request('POST', '/api/v1/namespaces', {
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: { name: ns, labels: { 'pod-security.kubernetes.io/enforce': level } },
        });
      }
    });
    afterAll(async () => {
      await kube?.stop();
    });

    async function dryRun(obj: KubeDoc): Promise<string | undefined> {
      const res = await kube.request('POST', `${collectionPath(obj)}?dryRun=All&fieldValidation=Strict`, obj);
      return res.status === 201 || res.status === 200
        ? undefined
        : `${obj.kind}/${obj.metadata.name}: ${res.status} ${String(res.body.message)}`;
    }

    it('the lab kustomizations and the example services pass server-side validation', async () => {
      const docs = [
        ...lab.get('a')!,
        ...lab.get('b')!,
        ...['helper-config', 'server', 'client'].flatMap((f) =>
          parseAllDocuments(readFileSync(`deploy/kind/demo/${f}.yaml`, 'utf8')).map(
            (d) => d.toJSON() as KubeDoc,
          ),
        ),
      ].filter((d) => d.kind !== 'Namespace');
      const failures = (await Promise.all(docs.map(dryRun))).filter(Boolean);
      expect(failures).toEqual([]);
    });

    it('the example workloads and the broker sidecar meet the restricted Pod Security Standard', async () => {
      const demo = ['server', 'client'].flatMap((f) =>
        parseAllDocuments(readFileSync(`deploy/kind/demo/${f}.yaml`, 'utf8')).map(
          (d) => d.toJSON() as KubeDoc,
        ),
      );
      const pods: KubeDoc[] = demo
        .filter((d) => d.kind === 'Deployment' || d.kind === 'Job')
        .map((d) => {
          const t = (d.spec as { template: { metadata: object; spec: Record<string, unknown> } }).template;
          return {
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: { ...t.metadata, name: `psa-${d.metadata.name}`, namespace: 'mtls-demo' },
            spec: { ...t.spec, serviceAccountName: 'default' },
          };
        });
      const server = values['spire-server'];
      pods.push({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'psa-broker-sidecar', namespace: 'spire-server' },
        spec: {
          containers: server.extraContainers,
          volumes: [{ name: 'spire-server-socket', emptyDir: {} }, ...server.extraVolumes],
        },
      });
      const failures = (await Promise.all(pods.map(dryRun))).filter(Boolean);
      expect(failures).toEqual([]);
    });
  });
});
