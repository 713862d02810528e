/**
 * Helpers for the Kubernetes suites: one real control plane per test file (kube-harness), an API
 * client for it, and polling for outcomes of real I/O (no fixed sleeps, no timing assertions).
 */
import { ClientNodeKubeApi } from '../../../src/adapters/k8s/index.js';
import type { KubeHarness } from '../../support/kube-harness.js';

export const CRD_FEDERATION_PEER = 'deploy/base/crd-federationpeer.yaml';
export const CRD_CFTD_FIXTURE = 'test/adapters/k8s/fixtures/crd-clusterfederatedtrustdomain.yaml';

/** A client for the harness' admin user. */
export function apiFor(kube: KubeHarness): ClientNodeKubeApi {
  return ClientNodeKubeApi.load({ kubeconfig: kube.kubeconfig }, { requestTimeoutMs: 10_000 });
}

/** Polls `check` until it returns a truthy value (returned), or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 15_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A minimal valid FederationPeer. */
export function federationPeer(name: string, trustDomain: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'spiffe-broker.dev/v1alpha1',
    kind: 'FederationPeer',
    metadata: { name },
    spec: {
      trustDomain,
      bundleEndpoint: { urls: [`https://${trustDomain}:8443/bundle`], profile: 'https_web' },
      ...extra,
    },
  };
}
