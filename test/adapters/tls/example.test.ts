import { describe, expect, it } from 'vitest';
import { runExample } from '../../../examples/cross-domain-mtls/example.js';
import { realSpireOrSkip } from '../../support/spire-harness.js';

const real = await realSpireOrSkip('cross-domain mTLS example on real spire-server');

describe('examples/cross-domain-mtls', () => {
  it.each(real ? (['emulator', 'real'] as const) : (['emulator'] as const))(
    'two services in different trust domains talk mTLS with SVIDs from their own SPIRE and bundles from their brokers (%s SPIRE)',
    async (spire) => {
      const r = await runExample({ spire });
      expect(r.spire).toBe(spire);
      expect(r.allowed).toBe('backend served spiffe://alpha.lab/frontend');
      expect(r.reverse).toBe('frontend served spiffe://gamma.lab/backend');
      expect(r.refused).toMatch(/^refused: /);
    },
    60_000,
  );
});
