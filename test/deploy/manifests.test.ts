/**
 * Every kustomization under deploy/ is rendered with a real kustomize and checked:
 * - against the real Kubernetes schemas: server-side dry-run create (`dryRun=All`,
 *   `fieldValidation=Strict`, so unknown or misspelled fields fail) on a real kube-apiserver;
 * - against the restricted Pod Security Standard: the pod template, dry-run as a Pod in a namespace
 *   enforcing "restricted", passes except for the documented SPIRE socket hostPath;
 * - for the security settings and least-privilege RBAC (no wildcards, no Secrets, exact verbs);
 * - for consistency: the broker config in the ConfigMap parses with the broker's own parsers,
 *   probes, Services, PDB and NetworkPolicy point at ports and labels that exist.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { isLoopbackHost } from '../../src/adapters/admin/app.js';
import { parseKubernetesSettings } from '../../src/adapters/k8s/index.js';
import { parseAllowlist, parseBrokerConfig } from '../../src/engine/config/index.js';
import { collectionPath, type KubeHarness, kubeAvailable, startKube } from '../support/kube-harness.js';
import { type KubeDoc, kustomizeRenderer, render } from './kustomize.js';

const KUSTOMIZATIONS = ['deploy/base', 'deploy/overlays/dev', 'deploy/overlays/production'] as const;
const haveRenderer = kustomizeRenderer() !== undefined;

interface Container {
  name: string;
  image: string;
  args?: string[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: string } };
  readinessProbe?: { httpGet?: { path: string; port: string } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface PodSpec {
  securityContext?: Record<string, unknown>;
  containers: Container[];
  volumes?: ({ name: string } & Record<string, unknown>)[];
  serviceAccountName?: string;
}

const byKind = (docs: KubeDoc[], kind: string) => docs.filter((d) => d.kind === kind);
const one = (docs: KubeDoc[], kind: string, name?: string): KubeDoc => {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
  return found[0]!;
};
const podSpec = (d: KubeDoc) =>
  (d.spec as { template: { spec: PodSpec; metadata: { labels: Record<string, string> } } }).template;

describe.skipIf(!haveRenderer)('deploy/ kustomizations', () => {
  const rendered = new Map<string, KubeDoc[]>();
  beforeAll(() => {
    for (const k of KUSTOMIZATIONS) rendered.set(k, render(k));
  });

  describe.each(KUSTOMIZATIONS)('%s', (dir) => {
    const docs = () => rendered.get(dir)!;

    it('has the expected objects, all named', () => {
      const kinds = new Set(docs().map((d) => d.kind));
      for (const k of [
        'Namespace',
        'CustomResourceDefinition',
        'ServiceAccount',
        'ClusterRole',
        'ClusterRoleBinding',
        'Role',
        'RoleBinding',
        'ConfigMap',
        'Deployment',
        'Service',
        'NetworkPolicy',
        'PodDisruptionBudget',
      ]) {
        expect(kinds, k).toContain(k);
      }
      for (const d of docs()) expect(d.metadata.name, d.kind).toMatch(/^[a-z0-9][-a-z0-9.]*$/);
    });

    it('runs the broker hardened: non-root, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp', () => {
      const dep = one(docs(), 'Deployment', 'spiffe-broker');
      const pod = podSpec(dep).spec;
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(Number(pod.securityContext?.runAsUser)).toBeGreaterThan(0);
      expect(pod.containers).toHaveLength(1);
      const c = pod.containers[0]!;
      expect(c.securityContext).toMatchObject({
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        privileged: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect((c.securityContext?.capabilities as { add?: unknown } | undefined)?.add).toBeUndefined();
      expect(c.resources?.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
      expect(c.resources?.limits).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
      expect(c.args).toEqual(['run', '--config', '/etc/spiffe-broker/config.yaml']);
      expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
      expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
      const portNames = (c.ports ?? []).map((p) => p.name);
      expect(portNames).toContain(c.livenessProbe?.httpGet?.port);
      expect(portNames).toContain(c.readinessProbe?.httpGet?.port);
    });

    it('has two replicas (one in dev), a PDB and a NetworkPolicy selecting the pods', () => {
      const dep = one(docs(), 'Deployment', 'spiffe-broker');
      expect((dep.spec as { replicas: number }).replicas).toBe(dir.endsWith('dev') ? 1 : 2);
      const labels = podSpec(dep).metadata.labels;
      const matches = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);
      const pdb = one(docs(), 'PodDisruptionBudget');
      expect(
        matches((pdb.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels),
      ).toBe(true);
      const np = one(docs(), 'NetworkPolicy');
      expect(
        matches(
          (np.spec as { podSelector: { matchLabels: Record<string, string> } }).podSelector.matchLabels,
        ),
      ).toBe(true);
      expect((np.spec as { policyTypes: string[] }).policyTypes).toEqual(['Ingress', 'Egress']);
    });

    it('has Services for the bundle endpoint, admin and metrics that reach named container ports', () => {
      const dep = one(docs(), 'Deployment', 'spiffe-broker');
      const c = podSpec(dep).spec.containers[0]!;
      const labels = podSpec(dep).metadata.labels;
      const portNames = new Set((c.ports ?? []).map((p) => p.name));
      const services = byKind(docs(), 'Service');
      expect(services.map((s) => s.metadata.name).sort()).toEqual([
        'spiffe-broker-admin',
        'spiffe-broker-bundle',
        'spiffe-broker-metrics',
        'spiffe-broker-verify',
      ]);
      for (const s of services) {
        const spec = s.spec as { selector: Record<string, string>; ports: { targetPort: string }[] };
        for (const [k, v] of Object.entries(spec.selector))
          expect(labels[k], `${s.metadata.name} selector ${k}`).toBe(v);
        for (const p of spec.ports) expect(portNames, s.metadata.name).toContain(p.targetPort);
      }
    });

    it('binds the verify API to loopback unless the overlay opts in, and then admits only labelled namespaces', () => {
      const pod = podSpec(one(docs(), 'Deployment', 'spiffe-broker')).spec;
      const volume = pod.volumes!.find((v) => v.name === 'config') as unknown as {
        configMap: { name: string };
      };
      const cm = one(docs(), 'ConfigMap', volume.configMap.name);
      const config = parseBrokerConfig((cm.data as Record<string, string>)['config.yaml']!);
      if (dir === 'deploy/base') expect(config.verify.listen.host).toBe('127.0.0.1');
      if (isLoopbackHost(config.verify.listen.host)) return;
      const np = one(docs(), 'NetworkPolicy');
      const rules = (np.spec as { ingress: { from?: unknown[]; ports: { port: string }[] }[] }).ingress;
      const verifyRules = rules.filter((r) => r.ports.some((p) => p.port === 'verify'));
      expect(verifyRules.length).toBeGreaterThan(0);
      for (const r of verifyRules) {
        expect(r.from).toEqual([
          { namespaceSelector: { matchLabels: { 'spiffe-broker.dev/verify': 'true' } } },
        ]);
      }
    });

    it('grants least privilege: exact verbs, no wildcards, no Secrets', () => {
      const rules = [...byKind(docs(), 'ClusterRole'), ...byKind(docs(), 'Role')].flatMap((r) =>
        (
          r.rules as { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[]
        ).map((rule) => ({
          role: r.metadata.name,
          ...rule,
        })),
      );
      for (const r of rules) {
        for (const field of [r.apiGroups, r.resources, r.verbs]) expect(field, r.role).not.toContain('*');
        expect(r.resources, r.role).not.toContain('secrets');
        expect(r.verbs, r.role).not.toContain('escalate');
        expect(r.verbs, r.role).not.toContain('bind');
        expect(r.verbs, r.role).not.toContain('impersonate');
      }
      const grants = Object.fromEntries(
        rules.map((r) => [
          `${r.role}:${r.apiGroups.join(',')}/${r.resources.join(',')}`,
          [...r.verbs].sort(),
        ]),
      );
      expect(grants).toEqual({
        'spiffe-broker:spiffe-broker.dev/federationpeers': ['get', 'list', 'watch'],
        'spiffe-broker:spiffe-broker.dev/federationpeers/status': ['patch', 'update'],
        'spiffe-broker:spire.spiffe.io/clusterfederatedtrustdomains': ['get', 'list', 'watch'],
        'spiffe-broker:/namespaces': ['get', 'list', 'watch'],
        'spiffe-broker-bundle-configmaps:/configmaps': [
          'create',
          'delete',
          'get',
          'list',
          'patch',
          'update',
          'watch',
        ],
        'spiffe-broker-cluster-trust-bundles:certificates.k8s.io/clustertrustbundles': [
          'create',
          'delete',
          'get',
          'list',
          'update',
        ],
        'spiffe-broker-cluster-trust-bundles:certificates.k8s.io/signers': ['attest'],
        'spiffe-broker-leader-election:coordination.k8s.io/leases': ['create', 'get', 'update'],
        'spiffe-broker-references:/configmaps': ['get'],
      });
      // ConfigMap write access is bound per namespace, never cluster-wide.
      for (const b of byKind(docs(), 'ClusterRoleBinding')) {
        expect((b.roleRef as { name: string }).name).not.toBe('spiffe-broker-bundle-configmaps');
      }
      // Every binding names the broker's service account in its namespace.
      for (const b of [...byKind(docs(), 'ClusterRoleBinding'), ...byKind(docs(), 'RoleBinding')]) {
        expect(b.subjects).toEqual([
          { kind: 'ServiceAccount', name: 'spiffe-broker', namespace: 'spiffe-broker' },
        ]);
      }
    });

    it('carries a broker config the broker itself accepts, consistent with the pod', () => {
      const dep = one(docs(), 'Deployment', 'spiffe-broker');
      const pod = podSpec(dep).spec;
      const c = pod.containers[0]!;
      const configVolume = pod.volumes!.find((v) => v.name === 'config') as unknown as {
        configMap: { name: string };
      };
      const cm = one(docs(), 'ConfigMap', configVolume.configMap.name);
      const data = cm.data as Record<string, string>;
      const config = parseBrokerConfig(data['config.yaml']!);
      const settings = parseKubernetesSettings(config.kubernetes!);
      expect(parseAllowlist(data['allowlist.yaml']!).peers).toEqual([]);
      const mounts = c.volumeMounts!;
      const mountOf = (path: string) =>
        mounts
          .filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`))
          .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
      // The config and allowlist files are where the ConfigMap is mounted.
      expect(mountOf('/etc/spiffe-broker/config.yaml')?.name).toBe('config');
      expect(mountOf(config.allowlist.file)?.name).toBe('config');
      // With a read-only root filesystem, state must be on a writable volume.
      const state = mountOf(config.stateDir);
      expect(state?.readOnly).not.toBe(true);
      expect(mountOf(config.audit.file)).toEqual(state);
      expect(mountOf('/tmp')?.readOnly).not.toBe(true);
      // The SPIRE server socket is on the socket volume.
      const spire = config.spire.servers[0]!.address.replace('unix://', '');
      expect(mountOf(spire)?.name).toBe('spire-server-socket');
      // Listeners match the container ports; probes and metrics are reachable from outside the pod.
      const ports = Object.fromEntries((c.ports ?? []).map((p) => [p.name, p.containerPort]));
      expect(config.endpoint?.listen.port).toBe(ports.bundle);
      expect(config.admin.listen?.port).toBe(ports.admin);
      expect(config.verify.listen.port).toBe(ports.verify);
      expect(config.probe.listen).toEqual({ host: '0.0.0.0', port: ports.health });
      // Leader election in the pod's own namespace, identity from the downward API.
      expect(settings.leaderElection?.namespace).toBe(dep.metadata.namespace);
      const env =
        (c as { env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[] }).env ?? [];
      expect(
        env.find((e) => e.name === settings.leaderElection?.identityEnv)?.valueFrom?.fieldRef?.fieldPath,
      ).toBe('metadata.name');
      expect(settings.bundleConfigMaps?.namespaceSelector).toBe('spiffe-broker.dev/bundles=enabled');
    });
  });

  describe.skipIf(!kubeAvailable())('against a real kube-apiserver', () => {
    let kube: KubeHarness;
    beforeAll(async () => {
      kube = await startKube();
      console.info(`kube-apiserver + etcd ready in ${kube.startupMs} ms`);
      // Namespaces and the CRD really exist, so namespaced objects and FederationPeers dry-run.
      const crd = one(rendered.get('deploy/base')!, 'CustomResourceDefinition');
      await kube.apply(JSON.stringify(crd));
      for (const ns of ['spiffe-broker', 'demo', 'payments', 'storefront']) {
        await kube.request('POST', '/api/v1/namespaces', {
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: { name: ns },
        });
      }
      await kube.request('POST', '/api/v1/namespaces', {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: 'psa-restricted', labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } },
      });
    });
    afterAll(async () => {
      await kube?.stop();
    });

    async function dryRun(obj: KubeDoc): Promise<{ status: number; message: string }> {
      const path = `${collectionPath(obj)}?dryRun=All&fieldValidation=Strict`;
      const res = await kube.request('POST', path, obj);
      return { status: res.status, message: String(res.body.message ?? '') };
    }

    it.each(KUSTOMIZATIONS)(
      '%s: every object passes server-side validation (dry run, strict fields)',
      async (dir) => {
        const failures: string[] = [];
        for (const obj of rendered.get(dir)!) {
          if (
            obj.kind === 'CustomResourceDefinition' ||
            (obj.kind === 'Namespace' && obj.metadata.name === 'spiffe-broker')
          ) {
            // Created for real above (the CRD from the base: overlays must not change it).
            continue;
          }
          const r = await dryRun(obj);
          if (r.status !== 201 && r.status !== 200)
            failures.push(`${obj.kind}/${obj.metadata.name}: ${r.status} ${r.message}`);
        }
        expect(failures).toEqual([]);
        const crds = byKind(rendered.get(dir)!, 'CustomResourceDefinition');
        expect(crds).toEqual(byKind(rendered.get('deploy/base')!, 'CustomResourceDefinition'));
      },
    );

    it('the example FederationPeers are valid', async () => {
      const docs = parseAllDocuments(readFileSync('deploy/examples/federationpeer.yaml', 'utf8')).map(
        (d) => d.toJSON() as KubeDoc,
      );
      expect(docs).toHaveLength(2);
      for (const d of docs) expect(await dryRun(d)).toMatchObject({ status: 201 });
    });

    it.each(KUSTOMIZATIONS)(
      '%s: the pod meets the restricted Pod Security Standard, except the documented SPIRE socket hostPath',
      async (dir) => {
        const template = podSpec(one(rendered.get(dir)!, 'Deployment', 'spiffe-broker'));
        const pod = (volumes: unknown[]): KubeDoc => ({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'psa-check', namespace: 'psa-restricted', labels: template.metadata.labels },
          spec: { ...template.spec, serviceAccountName: 'default', volumes },
        });
        const volumes = template.spec.volumes!;
        const withoutHostPath = volumes.map((v) => ('hostPath' in v ? { name: v.name, emptyDir: {} } : v));
        const ok = await dryRun(pod(withoutHostPath));
        expect(ok.message).toBe('');
        expect(ok.status).toBe(201);
        const refused = await dryRun(pod(volumes));
        expect(refused.status).toBe(403);
        expect(refused.message).toContain('restricted volume types');
        expect(refused.message).toContain('hostPath');
        expect(refused.message).not.toMatch(
          /runAsNonRoot|allowPrivilegeEscalation|capabilities|seccompProfile/,
        );
      },
    );

    it('a broken manifest is refused (the check can fail)', async () => {
      const dep = structuredClone(one(rendered.get('deploy/base')!, 'Deployment', 'spiffe-broker'));
      (podSpec(dep).spec.containers[0] as unknown as Record<string, unknown>).readOnlyRootFilesystem = true;
      const r = await dryRun(dep);
      expect(r.status).toBe(400);
      expect(r.message).toContain('unknown field');
    });
  });
});
