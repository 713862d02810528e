import { describe, expect, it } from 'vitest';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import type { PeerConfig } from '../../../src/engine/config/types.js';
import { PublishRouting } from '../../../src/engine/publish/routing.js';

const peer = (td: string, targetServers: PeerConfig['targetServers']): PeerConfig => ({
  trustDomain: TrustDomain.parse(td),
  urls: [new URL(`https://${td}/`)],
  profile: { kind: 'https_web' },
  refresh: { minIntervalSeconds: 1, maxIntervalSeconds: 300 },
  keyPolicy: {},
  targetServers,
  allowEmptyBundle: false,
});

describe('PublishRouting', () => {
  it('routes a peer to its target servers by one lookup, never by listing every peer', () => {
    const peers = new Map([
      ['a.test', peer('a.test', 'all')],
      ['b.test', peer('b.test', ['spire-2', 'gone'])],
    ]);
    let listed = 0;
    const routing = new PublishRouting({
      peers: () => {
        listed++;
        return [...peers.values()];
      },
      peer: (td) => peers.get(td),
      bundle: () => undefined,
      servers: () => ['spire-1', 'spire-2'],
    });
    expect(routing.targetsOf('a.test')).toEqual(['spire-1', 'spire-2']);
    // A configured name that is not a server is left out.
    expect(routing.targetsOf('b.test')).toEqual(['spire-2']);
    expect(routing.targetsOf('c.test')).toEqual([]);
    // Asked once per accepted bundle: at 10,000 peers a scan per call was quadratic.
    expect(listed).toBe(0);
  });
});
