/**
 * The SPIRE sync's view of the typed client (spire-client-api.ts), against the emulator over a
 * real unix socket: what it asks SPIRE to send back, and what it keeps of the answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BundleItemResult,
  type SpireCallOptions,
  SpireServerClient,
} from '../../../src/adapters/spire/client.js';
import type { BundleFields } from '../../../src/adapters/spire/convert.js';
import { SpireEmulator } from '../../../src/adapters/spire/emulator/index.js';
import { loadSpireApi } from '../../../src/adapters/spire/proto.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { spireFederationApi } from '../../../src/engine/publish/spire-client-api.js';
import { makeBundle } from '../../adapters/spire/helpers.js';

const api = loadSpireApi();

/** Keeps what the client itself got back from each BatchSetFederatedBundle. */
class RecordingClient extends SpireServerClient {
  readonly answers: { fields: BundleFields | undefined; results: BundleItemResult[] }[] = [];
  override async batchSetFederatedBundle(
    bundles: readonly TrustBundle[],
    opts: SpireCallOptions & { fields?: BundleFields } = {},
  ): Promise<BundleItemResult[]> {
    const results = await super.batchSetFederatedBundle(bundles, opts);
    this.answers.push({ fields: opts.fields, results });
    return results;
  }
}

describe('spireFederationApi', () => {
  const emu = new SpireEmulator({ trustDomain: 'own.test', api });
  let client: RecordingClient;

  beforeAll(async () => {
    const { address } = await emu.start();
    client = new RecordingClient({ address, api });
  });

  afterAll(async () => {
    client.close();
    await emu.stop();
  });

  it('BatchSet asks SPIRE for no bundle field back (an output mask), and SPIRE still stores everything', async () => {
    const bundles = await Promise.all([
      makeBundle('a.test', { x509: 2, jwt: 1, sequence: 3n }),
      makeBundle('b.test', { x509: 1, jwt: 2, sequence: 9n }),
    ]);
    const results = await spireFederationApi(client).batchSetFederatedBundle(bundles);
    expect(results.map((r) => [r.trustDomain, r.ok])).toEqual([
      ['a.test', true],
      ['b.test', true],
    ]);
    // What came back over the wire: the trust domain only, no authority.
    const answer = client.answers.at(-1)!;
    expect(answer.fields).toEqual({});
    for (const r of answer.results) {
      expect(r.bundle?.x509Authorities ?? []).toHaveLength(0);
      expect(r.bundle?.jwtAuthorities.size ?? 0).toBe(0);
    }
    // What SPIRE stored: all of it.
    for (const b of bundles) {
      const stored = emu.federatedBundle(b.trustDomain.name)!;
      expect(stored.x509Authorities.map((a) => a.sha256)).toEqual(b.x509Authorities.map((a) => a.sha256));
      expect([...stored.jwtAuthorities.keys()]).toEqual([...b.jwtAuthorities.keys()]);
      expect(stored.sequence).toBe(b.sequence);
    }
    // The client's cache still holds the full bundles it wrote: a later full read parses nothing new.
    const listed = await client.listFederatedBundles();
    expect(listed.find((b) => b.trustDomain.name === 'a.test')).toBe(bundles[0]);
  });
});
