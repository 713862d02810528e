import { describe, expect, it } from 'vitest';
import { parseKubernetesSettings } from '../../../src/adapters/k8s/index.js';

describe('parseKubernetesSettings', () => {
  it('fills defaults for an empty section', () => {
    expect(parseKubernetesSettings({})).toEqual({ credentials: { inCluster: true }, statusUpdates: true });
  });

  it('reads every part', () => {
    const s = parseKubernetesSettings({
      credentials: { kubeconfigFile: '/etc/kube/config', context: 'lab' },
      allowlist: { clusterFederatedTrustDomains: { className: 'broker' }, resync: '30s' },
      statusUpdates: false,
      bundleConfigMaps: { namespaceSelector: 'spiffe-broker.dev/bundles=enabled', resync: '10m' },
      leaderElection: {
        namespace: 'spiffe-broker',
        leaseDuration: '20s',
        renewDeadline: '15s',
        retryPeriod: '3s',
      },
    });
    expect(s).toEqual({
      credentials: { kubeconfigFile: '/etc/kube/config', context: 'lab' },
      statusUpdates: false,
      allowlist: {
        resyncMs: 30_000,
        clusterFederatedTrustDomains: { className: 'broker', includeClassless: false },
      },
      bundleConfigMaps: {
        namespaceSelector: 'spiffe-broker.dev/bundles=enabled',
        owner: 'spiffe-broker',
        resyncMs: 600_000,
      },
      leaderElection: {
        namespace: 'spiffe-broker',
        leaseName: 'spiffe-broker',
        identityEnv: 'POD_NAME',
        leaseDurationMs: 20_000,
        renewDeadlineMs: 15_000,
        retryPeriodMs: 3_000,
      },
    });
  });

  it('reads clusterTrustBundles: defaults, a signer name, and enabled: false', () => {
    expect(parseKubernetesSettings({ clusterTrustBundles: {} }).clusterTrustBundles).toEqual({
      signerName: 'spiffe-broker.dev/federation',
      owner: 'spiffe-broker',
      resyncMs: 300_000,
    });
    expect(
      parseKubernetesSettings({
        clusterTrustBundles: { signerName: 'example.com/partners', owner: 'b2', resync: '1m' },
      }).clusterTrustBundles,
    ).toEqual({ signerName: 'example.com/partners', owner: 'b2', resyncMs: 60_000 });
    expect(parseKubernetesSettings({ clusterTrustBundles: { enabled: false } }).clusterTrustBundles).toBe(
      undefined,
    );
  });

  it.each([
    [{ clusterTrustBundles: { signerName: 'nodomain' } }, 'kubernetes.clusterTrustBundles.signerName'],
    [
      { clusterTrustBundles: { signerName: 'kubernetes.io/kube-apiserver-client' } },
      'kubernetes.clusterTrustBundles.signerName: kubernetes.io signers',
    ],
    [{ clusterTrustBundles: { enabled: 'yes' } }, 'kubernetes.clusterTrustBundles.enabled'],
    [{ clusterTrustBundles: { signer: 'a.b/c' } }, 'kubernetes.clusterTrustBundles.signer: unknown key'],
    [{ leaderElection: {} }, 'kubernetes.leaderElection.namespace: is required'],
    [{ leaderElection: { namespace: 'ns', leaseDuration: '5s' } }, 'leaseDuration > renewDeadline'],
    [{ bundleConfigMaps: { namespaceSelector: '' } }, 'kubernetes.bundleConfigMaps.namespaceSelector'],
    [{ bundleConfigMaps: { namespaceSelector: 'a in (' } }, 'kubernetes.bundleConfigMaps.namespaceSelector'],
    [{ allowlist: { resync: 'soon' } }, 'kubernetes.allowlist.resync'],
    [{ leaderElection: { namespace: 'ns', retryPeriod: 'x' } }, 'kubernetes.leaderElection.retryPeriod'],
    [{ bundleConfigMap: {} }, 'kubernetes.bundleConfigMap: unknown key'],
  ])('refuses %j', (raw, message) => {
    expect(() => parseKubernetesSettings(raw)).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_SCHEMA' }),
    );
    expect(() => parseKubernetesSettings(raw)).toThrow(message);
  });
});

describe('label selectors', async () => {
  const { matchesLabels, parseLabelSelector } = await import('../../../src/adapters/k8s/index.js');
  it.each([
    ['env=prod', { env: 'prod' }, true],
    ['env==prod', { env: 'dev' }, false],
    ['env!=prod', {}, true],
    ['env in (a, b),tier', { env: 'b', tier: 'x' }, true],
    ['env notin (a,b)', { env: 'a' }, false],
    ['!legacy', { legacy: 'yes' }, false],
    ['spiffe-broker.dev/bundles=enabled', { 'spiffe-broker.dev/bundles': 'enabled' }, true],
  ])('%s matches %j: %s', (sel, labels, want) => {
    expect(matchesLabels(parseLabelSelector(sel), labels)).toBe(want);
  });
  it('refuses malformed selectors', () => {
    expect(() => parseLabelSelector('a=b=c')).toThrow(expect.objectContaining({ code: 'ERR_K8S_CONFIG' }));
    expect(() => parseLabelSelector('env in (a b)')).toThrow(
      expect.objectContaining({ code: 'ERR_K8S_CONFIG' }),
    );
  });
});
