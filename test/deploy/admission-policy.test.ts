/**
 * The FederationPeer admission policy (deploy/components/admission-policy, included by the
 * production overlay) on a real kube-apiserver: the CRD, the ValidatingAdmissionPolicy, its binding
 * and its params ConfigMap are taken from the rendered production overlay and created for real;
 * then FederationPeers are created and updated and the API server itself admits or refuses them
 * with the policy's messages.
 *
 * The API server loads policies, bindings and params through informers, so a change becomes active
 * a moment after it is stored: every step that changes them polls with a bounded wait.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { collectionPath, type KubeHarness, kubeAvailable, startKube } from '../support/kube-harness.js';
import { type KubeDoc, kustomizeRenderer, render } from './kustomize.js';

const POLICY = 'spiffe-broker-federationpeers';
const PARAMS = 'spiffe-broker-admission';
const PEERS = '/apis/spiffe-broker.dev/v1alpha1/federationpeers';
const PARAMS_PATH = `/api/v1/namespaces/spiffe-broker/configmaps/${PARAMS}`;
const CFTD_POLICY = 'spiffe-broker-clusterfederatedtrustdomains';
const CFTDS = '/apis/spire.spiffe.io/v1alpha1/clusterfederatedtrustdomains';
const BINDING_PATH = `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/${POLICY}`;
/** How long a policy, binding or params change may take to reach the admission plugin. */
const ACTIVATION_TIMEOUT_MS = 60_000;

const LOCAL_TD = 'prod.example.org';
const MSG_LOCAL = `spec.trustDomain: ${LOCAL_TD} is the local trust domain; a trust domain never federates with itself`;
const msgOutside = (td: string) =>
  `spec.trustDomain: ${td} is outside the allowed trust domain suffixes (partner.example, vendor.example)`;
const MSG_CA = 'spec.bundleEndpoint: profile https_web needs caConfigMapRef (a pinned CA) in this cluster';
const MSG_NO_PARAMS = 'no params found';

type Endpoint = Record<string, unknown>;
const spiffeEndpoint = (td: string): Endpoint => ({
  urls: [`https://bundle.${td}:8443`],
  profile: 'https_spiffe',
  endpointSPIFFEID: `spiffe://${td}/spire/server`,
});
const webEndpoint = (td: string, pinned: boolean): Endpoint => ({
  urls: [`https://bundle.${td}/`],
  profile: 'https_web',
  ...(pinned ? { caConfigMapRef: { namespace: 'spiffe-broker', name: 'peer-ca', key: 'ca.pem' } } : {}),
});
const peer = (name: string, trustDomain: string, bundleEndpoint: Endpoint) => ({
  apiVersion: 'spiffe-broker.dev/v1alpha1',
  kind: 'FederationPeer',
  metadata: { name },
  spec: { trustDomain, bundleEndpoint },
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const haveTools = kustomizeRenderer() !== undefined && kubeAvailable();

describe.skipIf(!haveTools)(
  'FederationPeer admission policy (production overlay) on a real kube-apiserver',
  () => {
    let kube: KubeHarness;
    let docs: KubeDoc[];
    /** How long each policy, params or binding change took to take effect, ms. */
    const waits: Record<string, number> = {};
    const find = (kind: string, name?: string): KubeDoc => {
      const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
      expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
      return found[0]!;
    };

    /** A create (dry run unless `persist`); status and the API server's message. */
    async function create(obj: object, persist = false): Promise<{ status: number; message: string }> {
      const res = await kube.request('POST', persist ? PEERS : `${PEERS}?dryRun=All`, obj);
      return { status: res.status, message: String(res.body.message ?? '') };
    }

    /** Polls `check` until it holds, at most {@link ACTIVATION_TIMEOUT_MS}; returns the wait in ms. */
    async function eventually(what: string, check: () => Promise<boolean>): Promise<number> {
      const t0 = Date.now();
      while (!(await check())) {
        if (Date.now() - t0 > ACTIVATION_TIMEOUT_MS)
          throw new Error(`${what}: not within ${ACTIVATION_TIMEOUT_MS} ms`);
        await sleep(200);
      }
      return Date.now() - t0;
    }

    const refusedWith = (obj: object, text: string) => async () => {
      const r = await create(obj);
      return r.status === 422 && r.message.includes(text);
    };
    const admitted = (obj: object) => async () => (await create(obj)).status === 201;

    beforeAll(async () => {
      docs = render('deploy/overlays/production');
      kube = await startKube();
      await kube.apply(JSON.stringify(find('CustomResourceDefinition')));
      // spire-controller-manager's CRD, as the broker's own tests stand it in.
      await kube.apply(
        readFileSync('test/adapters/k8s/fixtures/crd-clusterfederatedtrustdomain.yaml', 'utf8'),
      );
      const ns = await kube.request('POST', '/api/v1/namespaces', {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: 'spiffe-broker' },
      });
      expect(ns.status).toBe(201);
      for (const obj of [
        find('ConfigMap', PARAMS),
        find('ValidatingAdmissionPolicy', POLICY),
        find('ValidatingAdmissionPolicyBinding', POLICY),
        find('ValidatingAdmissionPolicy', CFTD_POLICY),
        find('ValidatingAdmissionPolicyBinding', CFTD_POLICY),
      ]) {
        const res = await kube.request('POST', collectionPath(obj), obj);
        expect(res.status, `${obj.kind}: ${JSON.stringify(res.body)}`).toBe(201);
      }
      const ms = await eventually(
        'policy active',
        refusedWith(peer('probe', LOCAL_TD, spiffeEndpoint(LOCAL_TD)), MSG_LOCAL),
      );
      console.info(`admission policy active ${ms} ms after it was created`);
    }, 180_000);
    afterAll(async () => {
      if (Object.keys(waits).length > 0) console.info(`changes active after (ms): ${JSON.stringify(waits)}`);
      await kube?.stop();
    });

    it('is shipped in the production overlay with its params, and not in base or dev', () => {
      expect(find('ConfigMap', PARAMS).data).toEqual({
        localTrustDomain: LOCAL_TD,
        allowedTrustDomainSuffixes: 'partner.example, vendor.example',
        requirePinnedCA: 'true',
        brokerClassName: 'spiffe-broker',
        includeClassless: 'false',
      });
      const binding = find('ValidatingAdmissionPolicyBinding', POLICY).spec as Record<string, unknown>;
      expect(binding).toMatchObject({
        policyName: POLICY,
        validationActions: ['Deny'],
        paramRef: { name: PARAMS, namespace: 'spiffe-broker', parameterNotFoundAction: 'Deny' },
      });
      for (const dir of ['deploy/base', 'deploy/overlays/dev']) {
        expect(render(dir).filter((d) => d.kind.startsWith('ValidatingAdmissionPolicy'))).toEqual([]);
      }
    });

    it('admits peers that follow the rules (a listed domain, a subdomain, https_web with a pinned CA)', async () => {
      for (const p of [
        peer('partner', 'partner.example', spiffeEndpoint('partner.example')),
        peer('partner-eu', 'eu.partner.example', spiffeEndpoint('eu.partner.example')),
        peer('vendor', 'vendor.example', webEndpoint('vendor.example', true)),
      ]) {
        const r = await create(p, true);
        expect(r, p.metadata.name).toEqual({ status: 201, message: '' });
      }
    });

    it('refuses https_web without a pinned CA', async () => {
      const r = await create(
        peer('vendor-roots', 'vendor.example', webEndpoint('vendor.example', false)),
        true,
      );
      expect(r.status).toBe(422);
      expect(r.message).toContain(
        `ValidatingAdmissionPolicy '${POLICY}' with binding '${POLICY}' denied request`,
      );
      expect(r.message).toContain(MSG_CA);
      console.info(`refusal as the API server words it: ${r.message}`);
    });

    it('refuses trust domains outside the allowed suffixes, including look-alikes that only end with the text', async () => {
      for (const td of ['other.test', 'evilpartner.example', 'partner.example.evil.test']) {
        const r = await create(peer(`outside-${td.replaceAll('.', '-')}`, td, spiffeEndpoint(td)), true);
        expect(r.status, td).toBe(422);
        expect(r.message, td).toContain(msgOutside(td));
      }
    });

    it('refuses the local trust domain', async () => {
      const r = await create(peer('self', LOCAL_TD, spiffeEndpoint(LOCAL_TD)), true);
      expect(r.status).toBe(422);
      expect(r.message).toContain(MSG_LOCAL);
    });

    it('gives the verdicts and messages of the Gatekeeper suite on the shared testdata (deploy/examples/policies)', async () => {
      const suite = parse(readFileSync('deploy/examples/policies/gatekeeper/suite.yaml', 'utf8')) as {
        tests: { cases: { name: string; object: string; assertions: { message?: string }[] }[] }[];
      };
      const cases = suite.tests.flatMap((t) => t.cases);
      expect(cases.length).toBeGreaterThanOrEqual(7);
      for (const c of cases) {
        const obj = parse(
          readFileSync(join('deploy/examples/policies/gatekeeper', c.object), 'utf8'),
        ) as object;
        const r = await create(obj);
        if (c.object.includes('/allowed-')) {
          expect(r, c.name).toEqual({ status: 201, message: '' });
          continue;
        }
        expect(r.status, c.name).toBe(422);
        // gator's messages are anchored to the violation; here the API server prefixes the policy.
        const patterns = c.assertions.flatMap((a) => (a.message ? [a.message.replace(/^\^|\$$/g, '')] : []));
        expect(patterns.length, c.name).toBeGreaterThan(0);
        expect(
          patterns.some((p) => new RegExp(p).test(r.message)),
          `${c.name}: ${r.message}`,
        ).toBe(true);
      }
    });

    it(
      'holds ClusterFederatedTrustDomains the broker adopts (its class) to the same rules, and leaves other classes alone',
      async () => {
        const cftd = (name: string, trustDomain: string, type: string, className?: string) => ({
          apiVersion: 'spire.spiffe.io/v1alpha1',
          kind: 'ClusterFederatedTrustDomain',
          metadata: { name },
          spec: {
            trustDomain,
            bundleEndpointURL: `https://bundle.${trustDomain}/`,
            bundleEndpointProfile:
              type === 'https_spiffe'
                ? { type, endpointSPIFFEID: `spiffe://${trustDomain}/spire/server` }
                : { type },
            ...(className === undefined ? {} : { className }),
          },
        });
        const dryRun = async (obj: object) => {
          const res = await kube.request('POST', `${CFTDS}?dryRun=All`, obj);
          return { status: res.status, message: String(res.body.message ?? '') };
        };
        const self = cftd('self', LOCAL_TD, 'https_spiffe', 'spiffe-broker');
        waits['cftd policy active'] = await eventually('cftd policy active', async () => {
          const r = await dryRun(self);
          return r.status === 422 && r.message.includes(MSG_LOCAL);
        });
        expect((await dryRun(self)).message).toContain(`ValidatingAdmissionPolicy '${CFTD_POLICY}'`);
        const outside = await dryRun(cftd('other', 'other.test', 'https_spiffe', 'spiffe-broker'));
        expect(outside.status).toBe(422);
        expect(outside.message).toContain(msgOutside('other.test'));
        const web = await dryRun(cftd('vendor', 'vendor.example', 'https_web', 'spiffe-broker'));
        expect(web.status).toBe(422);
        expect(web.message).toContain(
          'spec.bundleEndpointProfile: profile https_web needs a pinned CA in this cluster, which a ClusterFederatedTrustDomain cannot carry; use a FederationPeer with caConfigMapRef',
        );
        expect(await dryRun(cftd('partner', 'partner.example', 'https_spiffe', 'spiffe-broker'))).toEqual({
          status: 201,
          message: '',
        });
        // spire-controller-manager's own objects (another class, or none without includeClassless).
        for (const other of [
          cftd('scm-web', 'other.test', 'https_web', 'spire-mgmt'),
          cftd('scm-classless', LOCAL_TD, 'https_web'),
        ]) {
          expect(await dryRun(other), other.metadata.name).toEqual({ status: 201, message: '' });
        }
        // includeClassless "true": the broker adopts classless objects, so they are checked too.
        const classless = cftd('scm-classless', LOCAL_TD, 'https_spiffe');
        const set = (includeClassless: string) =>
          kube.request(
            'PATCH',
            PARAMS_PATH,
            { data: { includeClassless } },
            { 'content-type': 'application/merge-patch+json' },
          );
        expect((await set('true')).status).toBe(200);
        waits['includeClassless true'] = await eventually('includeClassless true', async () => {
          const r = await dryRun(classless);
          return r.status === 422 && r.message.includes(MSG_LOCAL);
        });
        expect((await set('false')).status).toBe(200);
        waits['includeClassless false'] = await eventually(
          'includeClassless false',
          async () => (await dryRun(classless)).status === 201,
        );
      },
      3 * ACTIVATION_TIMEOUT_MS,
    );

    it('refuses an update that breaks a rule, and leaves the stored object as it was', async () => {
      const path = `${PEERS}/partner`;
      const patch = { spec: { trustDomain: 'partner.example.evil.test' } };
      const res = await kube.request('PATCH', path, patch, {
        'content-type': 'application/merge-patch+json',
      });
      expect(res.status).toBe(422);
      expect(String(res.body.message)).toContain(msgOutside('partner.example.evil.test'));
      const stored = await kube.request('GET', path);
      expect((stored.body.spec as { trustDomain: string }).trustDomain).toBe('partner.example');
    });

    it('the shipped examples: the https_spiffe partner is admitted, the https_web vendor on system roots is not', async () => {
      const examples = parseAllDocuments(readFileSync('deploy/examples/federationpeer.yaml', 'utf8')).map(
        (d) => d.toJSON() as KubeDoc,
      );
      const byName = new Map(examples.map((e) => [e.metadata.name, e]));
      expect(await create(byName.get('partner-example')!)).toEqual({ status: 201, message: '' });
      const vendor = await create(byName.get('vendor-example')!);
      expect(vendor.status).toBe(422);
      expect(vendor.message).toContain(MSG_CA);
    });

    it(
      'follows its params: requirePinnedCA "false" admits https_web on system roots',
      async () => {
        const roots = peer('vendor-roots', 'vendor.example', webEndpoint('vendor.example', false));
        const set = (requirePinnedCA: string) =>
          kube.request(
            'PATCH',
            PARAMS_PATH,
            { data: { requirePinnedCA } },
            { 'content-type': 'application/merge-patch+json' },
          );
        expect((await set('false')).status).toBe(200);
        waits['requirePinnedCA false'] = await eventually('requirePinnedCA false', admitted(roots));
        // The other rules still hold.
        expect((await create(peer('self', LOCAL_TD, spiffeEndpoint(LOCAL_TD)))).message).toContain(MSG_LOCAL);
        expect((await set('true')).status).toBe(200);
        waits['requirePinnedCA true again'] = await eventually(
          'requirePinnedCA true again',
          refusedWith(roots, MSG_CA),
        );
      },
      3 * ACTIVATION_TIMEOUT_MS,
    );

    it(
      'fails closed without its params: every FederationPeer (and ClusterFederatedTrustDomain) is refused',
      async () => {
        const params = find('ConfigMap', PARAMS);
        const ok = peer('partner-2', 'partner.example', spiffeEndpoint('partner.example'));
        expect((await kube.request('DELETE', PARAMS_PATH)).status).toBe(200);
        waits['params gone'] = await eventually('params gone', refusedWith(ok, MSG_NO_PARAMS));
        // ClusterFederatedTrustDomains too, whatever their class: the params are looked up first.
        const foreign = {
          apiVersion: 'spire.spiffe.io/v1alpha1',
          kind: 'ClusterFederatedTrustDomain',
          metadata: { name: 'scm-owned' },
          spec: {
            trustDomain: 'partner.example',
            bundleEndpointURL: 'https://bundle.partner.example/',
            bundleEndpointProfile: { type: 'https_web' },
            className: 'spire-mgmt',
          },
        };
        waits['params gone (cftd)'] = await eventually('params gone (cftd)', async () => {
          const r = await kube.request('POST', `${CFTDS}?dryRun=All`, foreign);
          return r.status === 422 && String(r.body.message).includes(MSG_NO_PARAMS);
        });
        const res = await kube.request('POST', collectionPath(params), params);
        expect(res.status).toBe(201);
        waits['params back'] = await eventually('params back', admitted(ok));
      },
      3 * ACTIVATION_TIMEOUT_MS,
    );

    it(
      'is turned off by deleting its binding (the broker still refuses the local trust domain itself)',
      async () => {
        const self = peer('self', LOCAL_TD, spiffeEndpoint(LOCAL_TD));
        expect((await create(self)).message).toContain(MSG_LOCAL);
        expect((await kube.request('DELETE', BINDING_PATH)).status).toBe(200);
        waits['binding gone'] = await eventually('binding gone', admitted(self));
      },
      3 * ACTIVATION_TIMEOUT_MS,
    );
  },
);
