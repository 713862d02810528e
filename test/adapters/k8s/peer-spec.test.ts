import { describe, expect, it } from 'vitest';
import {
  entryFromClusterFederatedTrustDomain,
  entryFromFederationPeer,
  type PeerCandidate,
  resourceFieldPath,
  validatePeerCandidates,
} from '../../../src/adapters/k8s/index.js';

const fp = (name: string, spec: Record<string, unknown>, refs = {}): PeerCandidate => ({
  id: `FederationPeer/${name}`,
  kind: 'FederationPeer',
  name,
  entry: entryFromFederationPeer(spec, refs),
});

const web = (td: string, url = `https://${td}/bundle`) => ({
  trustDomain: td,
  bundleEndpoint: { urls: [url], profile: 'https_web' },
});

describe('FederationPeer → allowlist entry', () => {
  it('mirrors the allowlist fields and maps references to files', () => {
    const entry = entryFromFederationPeer(
      {
        trustDomain: 'partner.example',
        bundleEndpoint: {
          urls: ['https://a.partner.example/b'],
          profile: 'https_spiffe',
          endpointSPIFFEID: 'spiffe://partner.example/spire/server',
          bootstrapBundle: '{"keys":[]}',
        },
        refresh: { minInterval: '5s', maxInterval: '10m' },
        keyPolicy: { maxKeys: 10, allowedKeyTypes: ['EC'] },
        spireServers: ['main'],
        allowEmptyBundle: true,
        relay: true,
        oidcIssuer: 'https://oidc.partner.example',
      },
      { bootstrapBundleFile: '/state/abc.json' },
    );
    expect(entry).toEqual({
      trustDomain: 'partner.example',
      bundleEndpoint: {
        urls: ['https://a.partner.example/b'],
        profile: 'https_spiffe',
        endpointSPIFFEID: 'spiffe://partner.example/spire/server',
        bootstrapBundleFile: '/state/abc.json',
      },
      refresh: { minInterval: '5s', maxInterval: '10m' },
      keyPolicy: { maxKeys: 10, allowedKeyTypes: ['EC'] },
      spireServers: ['main'],
      allowEmptyBundle: true,
      relay: true,
      oidcIssuer: 'https://oidc.partner.example',
    });
  });

  it('converts a ClusterFederatedTrustDomain', () => {
    expect(
      entryFromClusterFederatedTrustDomain(
        {
          trustDomain: 'backend.example',
          bundleEndpointURL: 'https://backend.example:8443',
          bundleEndpointProfile: {
            type: 'https_spiffe',
            endpointSPIFFEID: 'spiffe://backend.example/spire/server',
          },
          trustDomainBundle: '{}',
          className: 'spiffe-broker',
        },
        { bootstrapBundleFile: '/x.json' },
      ),
    ).toEqual({
      trustDomain: 'backend.example',
      bundleEndpoint: {
        urls: ['https://backend.example:8443'],
        profile: 'https_spiffe',
        endpointSPIFFEID: 'spiffe://backend.example/spire/server',
        bootstrapBundleFile: '/x.json',
      },
    });
  });

  it('maps entry paths to resource field paths', () => {
    expect(resourceFieldPath('FederationPeer', '/bundleEndpoint/urls/0')).toBe('spec.bundleEndpoint.urls[0]');
    expect(resourceFieldPath('FederationPeer', '/bundleEndpoint/bootstrapBundleFile')).toBe(
      'spec.bundleEndpoint.bootstrapBundle',
    );
    expect(resourceFieldPath('ClusterFederatedTrustDomain', '/bundleEndpoint/urls/0')).toBe(
      'spec.bundleEndpointURL',
    );
  });
});

describe('validatePeerCandidates (the YAML allowlist rules)', () => {
  it('accepts valid peers into a typed allowlist', () => {
    const { allowlist, rejected, accepted } = validatePeerCandidates(
      [fp('a', web('a.example')), fp('b', web('b.example'))],
      {
        localTrustDomain: 'example.org',
      },
    );
    expect(rejected).toEqual([]);
    expect(allowlist.peers.map((p) => p.trustDomain.name)).toEqual(['a.example', 'b.example']);
    expect(allowlist.peers[0]!.urls[0]!.href).toBe('https://a.example/bundle');
    expect(allowlist.peers[0]!.profile).toEqual({ kind: 'https_web' });
    expect(allowlist.peers[0]!.line).toBeUndefined();
    expect(allowlist.version).toMatch(/^[0-9a-f]{64}$/);
    expect(accepted.map((a) => a.candidate.name)).toEqual(['a', 'b']);
  });

  it('rejects one invalid peer with its code and field path, keeping the others', () => {
    const { allowlist, rejected } = validatePeerCandidates(
      [fp('good', web('a.example')), fp('bad', web('b.example', 'http://b.example/bundle'))],
      {},
    );
    expect(allowlist.peers.map((p) => p.trustDomain.name)).toEqual(['a.example']);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.candidate.name).toBe('bad');
    expect(rejected[0]!.code).toBe('ERR_CONFIG_URL');
    expect(rejected[0]!.message).toMatch(/^spec\.bundleEndpoint\.urls\[0\]: http:\/\/ is refused/);
  });

  it('refuses the local trust domain and later duplicates', () => {
    const { allowlist, rejected } = validatePeerCandidates(
      [
        fp('first', web('a.example')),
        fp('second', web('a.example', 'https://other/b')),
        fp('self', web('example.org')),
      ],
      { localTrustDomain: 'example.org' },
    );
    expect(allowlist.peers.map((p) => p.trustDomain.name)).toEqual(['a.example']);
    expect(rejected.map((r) => [r.candidate.name, r.code])).toEqual([
      ['self', 'ERR_CONFIG_LOCAL_TRUST_DOMAIN'],
      ['second', 'ERR_CONFIG_DUPLICATE_PEER'],
    ]);
  });

  it('does not count a duplicate against an entry that is itself rejected', () => {
    const { allowlist, rejected } = validatePeerCandidates(
      [fp('broken', web('a.example', 'http://x/')), fp('fine', web('a.example'))],
      {},
    );
    expect(rejected.map((r) => r.candidate.name)).toEqual(['broken']);
    expect(allowlist.peers).toHaveLength(1);
  });

  it('names the resource field in profile problems', () => {
    const { rejected } = validatePeerCandidates(
      [
        fp('self-serving', {
          trustDomain: 'p.example',
          bundleEndpoint: {
            urls: ['https://p.example/'],
            profile: 'https_spiffe',
            endpointSPIFFEID: 'spiffe://p.example/x',
          },
        }),
      ],
      { localTrustDomain: 'example.org' },
    );
    expect(rejected[0]!.code).toBe('ERR_CONFIG_PROFILE');
    expect(rejected[0]!.message).toContain('bootstrapBundle');
    expect(rejected[0]!.message).not.toContain('bootstrapBundleFile');
  });

  it('reports unknown server names as the file parser does', () => {
    const { rejected } = validatePeerCandidates([fp('x', { ...web('a.example'), spireServers: ['nope'] })], {
      serverNames: ['main'],
    });
    expect(rejected[0]!.code).toBe('ERR_CONFIG_UNKNOWN_SERVER');
    expect(rejected[0]!.message).toMatch(/^spec\.spireServers\[0\]/);
  });

  it('survives an entry with no spec at all', () => {
    const { allowlist, rejected } = validatePeerCandidates([fp('empty', {}), fp('ok', web('a.example'))], {});
    expect(allowlist.peers).toHaveLength(1);
    expect(rejected[0]!.candidate.name).toBe('empty');
    expect(rejected[0]!.message).toContain('spec');
  });
});
