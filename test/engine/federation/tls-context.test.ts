import { describe, expect, it } from 'vitest';
import { sharedSecureContext, tlsConnectOptions } from '../../../src/engine/federation/tls.js';
import { id, makeCa } from './helpers.js';

describe('client TLS contexts are shared per CA set', () => {
  it('one context per CA PEM (and one for the default roots), reused by every connection', async () => {
    const a = (await makeCa('a.test')).pem;
    const b = (await makeCa('b.test')).pem;
    const url = new URL('https://127.0.0.1:8443/');
    const web = (caPem?: string) =>
      tlsConnectOptions(url, { kind: 'https_web', ...(caPem ? { caPem } : {}) });
    expect(web(a).secureContext).toBe(web(a).secureContext);
    expect(web(a).secureContext).not.toBe(web(b).secureContext);
    expect(web().secureContext).toBe(sharedSecureContext(undefined));
    expect(web(a).secureContext).not.toBe(web().secureContext);
    // https_spiffe verifies by hand after the handshake: no CA, the default-roots context.
    const spiffe = tlsConnectOptions(url, {
      kind: 'https_spiffe',
      endpointSpiffeId: id('spiffe://a.test/spire/server'),
      bundles: { getBundleForTrustDomain: () => undefined },
    });
    expect(spiffe.secureContext).toBe(sharedSecureContext(undefined));
    expect(spiffe.rejectUnauthorized).toBe(false);
    expect(web(a).rejectUnauthorized).toBe(true);
  });
});
