import { describe, expect, it } from 'vitest';
import { runExample } from '../../examples/cross-domain-mtls/example.js';

describe('examples/cross-domain-mtls', () => {
  it('two services in different trust domains talk mTLS with SVIDs from their own SPIRE and bundles from their brokers', async () => {
    const r = await runExample();
    expect(r.ordersToBilling).toBe('billing served spiffe://shop.example/orders');
    expect(r.billingToOrders).toBe('orders served spiffe://bank.example/billing');
    expect(r.intruder).toMatch(/^refused: /);
  });
});
