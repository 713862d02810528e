/**
 * The SPIRE server API contract: one set of assertions run against the emulator and against real
 * spire-server (test/adapters/spire/contract.test.ts). The emulator is trusted only where both pass; every
 * known difference is written down in docs/spire-emulator.md.
 *
 * Tests run in order on one server per target: the paging test comes first, while only the
 * server's own bundle is stored; later tests use their own trust domain names.
 */
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr, generateKeyPair } from '../../../src/adapters/pki/index.js';
import { SpireServerClient } from '../../../src/adapters/spire/client.js';
import { bundleToWire } from '../../../src/adapters/spire/convert.js';
import type { WireBundle, WireFederationRelationship } from '../../../src/adapters/spire/wire.js';
import { MAX_SEQUENCE, TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { SpireError } from '../../../src/errors.js';
import { makeBundle, makeCa, makeJwtKey, td } from './helpers.js';
import { rawCall } from './raw.js';

/** What the suite needs from a target (the emulator or a real spire-server). */
export interface ContractTarget {
  readonly kind: 'emulator' | 'spire-server';
  readonly trustDomain: string;
  /** `unix://…` */
  readonly address: string;
  /** `dns:///127.0.0.1:<port>` (mTLS) */
  readonly tcpAddress: string;
  /** An ID listed in the server's admin_ids. */
  readonly adminId: string;
  /** `x509 mint`: an X509-SVID for `id` with the key and the server's bundle, as PEM. */
  mintSvid(id: string): Promise<{ certChainPem: string; privateKeyPem: string; bundlePem: string }>;
  /** `localauthority <kind> prepare` → authority ID. */
  prepareAuthority(kind: 'x509' | 'jwt'): Promise<string>;
  /** `localauthority <kind> activate`. */
  activateAuthority(kind: 'x509' | 'jwt', authorityId: string): Promise<void>;
  stop(): Promise<void>;
}

const INVALID_TD_CHARS =
  'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';

async function expectSpireError(
  p: Promise<unknown>,
  code: string,
  message: RegExp | string,
): Promise<SpireError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SpireError);
    expect((err as SpireError).code).toBe(code);
    if (typeof message === 'string') expect((err as SpireError).message).toContain(message);
    else expect((err as SpireError).message).toMatch(message);
    return err as SpireError;
  }
  throw new Error(`expected ${code}`);
}

/** Defines the contract suite for one target. */
export function defineSpireContract(label: string, setup: () => Promise<ContractTarget>): void {
  describe(`SPIRE server API contract: ${label}`, () => {
    let t: ContractTarget;
    let spire: SpireServerClient;
    const own = () => t.trustDomain;
    const raw = <T = Record<string, unknown>>(
      service: 'bundle' | 'trustDomain' | 'svid' | 'health',
      method: string,
      req: object,
    ) => rawCall<T>(t.address, service, method, req);

    beforeAll(async () => {
      t = await setup();
      spire = new SpireServerClient({ address: t.address, retry: { maxAttempts: 1 } });
    });

    afterAll(async () => {
      spire?.close();
      await t?.stop();
    });

    it('is healthy and starts with only its own bundle', async () => {
      expect(await spire.healthCheck()).toBe('SERVING');
      expect(await spire.countBundles()).toBe(1);
      expect(await spire.listFederatedBundles()).toEqual([]);
    });

    it('pages ListFederatedBundles by row id, filtering its own bundle after paging', async () => {
      const bundles = await Promise.all(
        ['page-1.test', 'page-2.test', 'page-3.test'].map((n) => makeBundle(n)),
      );
      const set = await spire.batchSetFederatedBundle(bundles);
      expect(set.map((r) => r.ok)).toEqual([true, true, true]);
      // own bundle (row 1) + 3 federated, page size 2 → [b1], [b2, b3], [] (SPIRE's own test).
      const p1 = await spire.listFederatedBundlesPage({ pageSize: 2 });
      expect(p1.bundles.map((b) => b.trustDomain.name)).toEqual(['page-1.test']);
      expect(p1.nextPageToken).not.toBe('');
      const p2 = await spire.listFederatedBundlesPage({ pageSize: 2, pageToken: p1.nextPageToken });
      expect(p2.bundles.map((b) => b.trustDomain.name)).toEqual(['page-2.test', 'page-3.test']);
      expect(p2.nextPageToken).not.toBe('');
      const p3 = await spire.listFederatedBundlesPage({ pageSize: 2, pageToken: p2.nextPageToken });
      expect(p3).toEqual({ bundles: [], nextPageToken: '' });
      // The tokens are decimal row ids.
      expect(p1.nextPageToken).toMatch(/^\d+$/);
      expect(Number(p2.nextPageToken)).toBeGreaterThan(Number(p1.nextPageToken));
      // page_size <= 0: everything at once, no token.
      const all = await spire.listFederatedBundlesPage({ pageSize: 0 });
      expect(all.bundles.map((b) => b.trustDomain.name)).toEqual([
        'page-1.test',
        'page-2.test',
        'page-3.test',
      ]);
      expect(all.nextPageToken).toBe('');
      // The client follows pages to the end.
      const followed = await spire.listFederatedBundles({ pageSize: 1 });
      expect(followed.map((b) => b.trustDomain.name)).toEqual(['page-1.test', 'page-2.test', 'page-3.test']);
      expect(await spire.countBundles()).toBe(4);
      const del = await spire.batchDeleteFederatedBundle(['page-1.test', 'page-2.test', 'page-3.test']);
      expect(del.map((r) => r.ok)).toEqual([true, true, true]);
      expect(await spire.countBundles()).toBe(1);
    });

    it('listFederatedBundleSequences: trust domains and sequence numbers of every page, no authorities', async () => {
      const bundles = await Promise.all(
        [
          ['seq-1.test', 4n],
          ['seq-2.test', 9n],
          ['seq-3.test', 0n],
        ].map(([n, seq]) => makeBundle(n as string, { sequence: seq as bigint })),
      );
      expect((await spire.batchSetFederatedBundle(bundles)).map((r) => r.ok)).toEqual([true, true, true]);
      const seqs = await spire.listFederatedBundleSequences({ pageSize: 2 });
      expect([...seqs]).toEqual([
        ['seq-1.test', 4n],
        ['seq-2.test', 9n],
        ['seq-3.test', 0n],
      ]);
      // The masked answer carries no authority: what the sync's periodic check relies on to be cheap.
      const masked = await raw<{ bundles: { x509_authorities: unknown[]; jwt_authorities: unknown[] }[] }>(
        'bundle',
        'ListFederatedBundles',
        { page_size: 0, output_mask: { sequence_number: true } },
      );
      expect(masked.ok && masked.value.bundles.length).toBe(3);
      const wire = masked.ok ? masked.value.bundles : [];
      expect(wire.every((b) => b.x509_authorities.length === 0 && b.jwt_authorities.length === 0)).toBe(true);
      await spire.batchDeleteFederatedBundle(['seq-1.test', 'seq-2.test', 'seq-3.test']);
    });

    it('answers INTERNAL for a page token that is not a row id', async () => {
      const r = await raw('bundle', 'ListFederatedBundles', { page_size: 2, page_token: 'abc' });
      expect(r).toEqual({
        ok: false,
        code: 'INTERNAL',
        message: "failed to list bundles: could not parse token 'abc'",
      });
    });

    it('GetBundle returns its own bundle: CA certificates and JWT keys, sequence >= 1', async () => {
      const b = await spire.getBundle();
      expect(b.trustDomain.name).toBe(own());
      expect(b.sequence).toBeGreaterThanOrEqual(1n);
      expect(b.x509Authorities.length).toBeGreaterThanOrEqual(1);
      expect(b.jwtAuthorities.size).toBeGreaterThanOrEqual(1);
      for (const a of b.x509Authorities) {
        expect(a.certificate.ca).toBe(true);
        expect(a.certificate.subjectAltName).toBe(`URI:spiffe://${own()}`);
      }
      for (const k of b.jwtAuthorities.values()) {
        expect(k.expiresAt).toBeGreaterThan(Math.floor(Date.now() / 1000));
        expect(k.kid.length).toBeGreaterThan(0);
      }
    });

    it('applies GetBundle output masks: absent = all, all-false = only trust_domain', async () => {
      const r = await raw<WireBundle>('bundle', 'GetBundle', {
        output_mask: {
          x509_authorities: false,
          jwt_authorities: false,
          refresh_hint: false,
          sequence_number: false,
        },
      });
      expect(r.ok && r.value).toEqual({
        trust_domain: own(),
        x509_authorities: [],
        jwt_authorities: [],
        refresh_hint: '0',
        sequence_number: '0',
        wit_authorities: [],
      });
      const masked = await spire.getBundle({ fields: { x509Authorities: true } });
      expect(masked.x509Authorities.length).toBeGreaterThan(0);
      expect(masked.jwtAuthorities.size).toBe(0);
      expect(masked.sequence).toBe(0n);
    });

    it('getBundleSequence reads the sequence alone; a prepared authority moves it', async () => {
      const before = await spire.getBundle();
      expect(await spire.getBundleSequence()).toBe(before.sequence);
      await t.prepareAuthority('jwt');
      const after = await spire.getBundleSequence();
      // The broker's local-bundle poll reads only this between full reads: every change SPIRE
      // makes to its own bundle must move it.
      expect(after).toBeGreaterThan(before.sequence);
      expect((await spire.getBundle()).sequence).toBe(after);
    });

    it('BatchCreate: OK, then ALREADY_EXISTS per item; own and invalid trust domains refused per item', async () => {
      const b = await makeBundle('create.test', { refreshHint: 60, sequence: 5n });
      const first = await spire.batchCreateFederatedBundle([b]);
      expect(first[0]).toMatchObject({
        trustDomain: 'create.test',
        ok: true,
        status: { code: 0, message: 'OK' },
      });
      expect(first[0]!.bundle?.sequence).toBe(5n);
      expect(first[0]!.bundle?.refreshHint).toBe(60);
      const ownBundle = await makeBundle(own());
      const second = await spire.batchCreateFederatedBundle([
        b,
        ownBundle,
        await makeBundle('create-2.test'),
      ]);
      expect(second.map((r) => [r.trustDomain, r.status.name, r.status.message])).toEqual([
        ['create.test', 'ALREADY_EXISTS', 'bundle already exists'],
        [
          own(),
          'INVALID_ARGUMENT',
          "creating a federated bundle for the server's own trust domain is not allowed",
        ],
        ['create-2.test', 'OK', 'OK'],
      ]);
      expect(second[0]!.error?.code).toBe('ERR_SPIRE_ALREADY_EXISTS');
      expect(second[1]!.error?.code).toBe('ERR_SPIRE_INVALID_ARGUMENT');
      expect(second[0]!.bundle).toBeUndefined();
      const bad = await raw<{ results: { status: { code: number; message: string }; bundle: unknown }[] }>(
        'bundle',
        'BatchCreateFederatedBundle',
        { bundle: [{ trust_domain: 'Bad.Test' }, { trust_domain: '' }] },
      );
      expect(bad.ok && bad.value.results).toEqual([
        {
          status: { code: 3, message: `trust domain argument is not valid: ${INVALID_TD_CHARS}` },
          bundle: null,
        },
        {
          status: { code: 3, message: 'trust domain argument is not valid: trust domain is missing' },
          bundle: null,
        },
      ]);
      expect(await spire.batchCreateFederatedBundle([])).toEqual([]);
      await spire.batchDeleteFederatedBundle(['create.test', 'create-2.test']);
    });

    it('BatchUpdate: NOT_FOUND for a missing bundle; masked update keeps other fields; no auto-increment', async () => {
      const missing = await spire.batchUpdateFederatedBundle([await makeBundle('update-missing.test')]);
      expect(missing[0]).toMatchObject({
        ok: false,
        status: { name: 'NOT_FOUND', message: 'bundle not found' },
      });
      expect(missing[0]!.error?.code).toBe('ERR_SPIRE_NOT_FOUND');

      const original = await makeBundle('update.test', { refreshHint: 30, sequence: 10n });
      await spire.batchCreateFederatedBundle([original]);
      const replacement = await makeBundle('update.test', { refreshHint: 99, sequence: 11n, x509: 2 });
      // Only the sequence number is written.
      const masked = await spire.batchUpdateFederatedBundle([replacement], {
        inputFields: { sequenceNumber: true },
      });
      expect(masked[0]!.ok).toBe(true);
      const afterMask = await spire.getFederatedBundle('update.test');
      expect(afterMask.sequence).toBe(11n);
      expect(afterMask.refreshHint).toBe(30);
      expect(afterMask.x509Authorities.map((a) => a.sha256)).toEqual(
        original.x509Authorities.map((a) => a.sha256),
      );
      // No mask: everything replaced, sequence as given (SPIRE does not increment it).
      const full = await spire.batchUpdateFederatedBundle([replacement.withSequence(3n)]);
      expect(full[0]!.bundle?.sequence).toBe(3n);
      const afterFull = await spire.getFederatedBundle('update.test');
      expect(afterFull.x509Authorities).toHaveLength(2);
      expect(afterFull.refreshHint).toBe(99);
      expect(afterFull.sequence).toBe(3n);
      const ownUpdate = await spire.batchUpdateFederatedBundle([await makeBundle(own())]);
      expect(ownUpdate[0]!.status.message).toBe(
        "updating a federated bundle for the server's own trust domain is not allowed",
      );
      await spire.batchDeleteFederatedBundle(['update.test']);
    });

    it('BatchSet: upserts with full replace and stores refresh hint and uint64 sequence as given', async () => {
      const a = await makeBundle('set.test', { refreshHint: 12345, sequence: MAX_SEQUENCE, jwt: 2 });
      const created = await spire.batchSetFederatedBundle([a]);
      expect(created[0]).toMatchObject({ ok: true, status: { code: 0, name: 'OK', message: 'OK' } });
      const stored = await spire.getFederatedBundle('set.test');
      expect(stored.sequence).toBe(MAX_SEQUENCE);
      expect(stored.refreshHint).toBe(12345);
      expect([...stored.jwtAuthorities.keys()]).toEqual([...a.jwtAuthorities.keys()]);
      expect([...stored.jwtAuthorities.values()].map((k) => k.expiresAt)).toEqual(
        [...a.jwtAuthorities.values()].map((k) => k.expiresAt),
      );
      // Replace everything, down to an empty bundle (a revocation of every key).
      const empty = TrustBundle.create({ trustDomain: td('set.test') });
      const replaced = await spire.batchSetFederatedBundle([empty]);
      expect(replaced[0]!.ok).toBe(true);
      const after = await spire.getFederatedBundle('set.test');
      expect(after.isEmpty()).toBe(true);
      expect(after.sequence).toBe(0n);
      expect(after.refreshHint).toBe(0);
      const ownSet = await spire.batchSetFederatedBundle([await makeBundle(own())]);
      expect(ownSet[0]).toMatchObject({
        ok: false,
        status: {
          name: 'INVALID_ARGUMENT',
          message: "setting a federated bundle for the server's own trust domain is not allowed",
        },
      });
      await spire.batchDeleteFederatedBundle(['set.test']);
    });

    it('keeps X.509 authorities and JWT keys in the order given', async () => {
      const cas = await Promise.all([makeCa('order.test'), makeCa('order.test'), makeCa('order.test')]);
      const keys = [makeJwtKey('k3'), makeJwtKey('k1'), makeJwtKey('k2')];
      const b = TrustBundle.create({
        trustDomain: td('order.test'),
        x509Authorities: cas.map((c) => c.der),
        jwtAuthorities: keys,
      });
      await spire.batchSetFederatedBundle([b]);
      const back = await spire.getFederatedBundle('order.test');
      expect(back.x509Authorities.map((a) => a.sha256)).toEqual(b.x509Authorities.map((a) => a.sha256));
      expect([...back.jwtAuthorities.keys()]).toEqual(['k3', 'k1', 'k2']);
      await spire.batchDeleteFederatedBundle(['order.test']);
    });

    it('accepts a trust domain given as a SPIFFE ID and answers with the bare name', async () => {
      const w = bundleToWire(await makeBundle('idform.test'));
      const r = await raw<{ results: { status: { code: number }; bundle: WireBundle | null }[] }>(
        'bundle',
        'BatchSetFederatedBundle',
        { bundle: [{ ...w, trust_domain: 'spiffe://idform.test/some/path' }] },
      );
      expect(r.ok && r.value.results[0]!.status.code).toBe(0);
      expect(r.ok && r.value.results[0]!.bundle?.trust_domain).toBe('idform.test');
      expect((await spire.getFederatedBundle('spiffe://idform.test')).trustDomain.name).toBe('idform.test');
      const del = await spire.batchDeleteFederatedBundle(['spiffe://idform.test']);
      // The result echoes the request string.
      expect(del[0]).toMatchObject({ trustDomain: 'spiffe://idform.test', ok: true });
    });

    it('refuses unparsable authorities per item with SPIRE’s message prefixes', async () => {
      const w = bundleToWire(await makeBundle('convert.test'));
      const r = await raw<{ results: { status: { code: number; message: string } }[] }>(
        'bundle',
        'BatchSetFederatedBundle',
        {
          bundle: [
            { ...w, x509_authorities: [{ asn1: Buffer.from('not a certificate') }] },
            { ...w, jwt_authorities: [{ ...w.jwt_authorities[0]!, key_id: '' }] },
            { ...w, jwt_authorities: [{ ...w.jwt_authorities[0]!, public_key: Buffer.from('garbage') }] },
          ],
        },
      );
      if (!r.ok) throw new Error(r.message);
      const [x509, kid, pkix] = r.value.results.map((x) => x.status);
      expect(x509!.code).toBe(3);
      expect(x509!.message).toMatch(/^failed to convert bundle: unable to parse X\.509 authority: /);
      expect(kid).toEqual({
        code: 3,
        message: 'failed to convert bundle: unable to parse JWT authority: missing key ID',
      });
      expect(pkix!.code).toBe(3);
      expect(pkix!.message).toMatch(/^failed to convert bundle: unable to parse JWT authority: /);
      expect(await spire.findFederatedBundle('convert.test')).toBeUndefined();
    });

    it('GetFederatedBundle: found, NOT_FOUND, own and invalid trust domains refused', async () => {
      await spire.batchSetFederatedBundle([await makeBundle('get.test')]);
      expect((await spire.getFederatedBundle(td('get.test'))).trustDomain.name).toBe('get.test');
      await expectSpireError(
        spire.getFederatedBundle('get-missing.test'),
        'ERR_SPIRE_NOT_FOUND',
        'NOT_FOUND: bundle not found',
      );
      expect(await spire.findFederatedBundle('get-missing.test')).toBeUndefined();
      await expectSpireError(
        spire.getFederatedBundle(own()),
        'ERR_SPIRE_INVALID_ARGUMENT',
        "getting a federated bundle for the server's own trust domain is not allowed",
      );
      const bad = await raw('bundle', 'GetFederatedBundle', { trust_domain: 'https://get.test' });
      expect(bad).toEqual({
        ok: false,
        code: 'INVALID_ARGUMENT',
        message: 'trust domain argument is not valid: scheme is missing or invalid',
      });
      await spire.batchDeleteFederatedBundle(['get.test']);
    });

    it('BatchDelete: OK, NOT_FOUND, own refused per item; an unknown mode fails the call', async () => {
      await spire.batchSetFederatedBundle([await makeBundle('delete.test')]);
      const r = await spire.batchDeleteFederatedBundle(['delete.test', 'delete.test', own(), 'Bad'], {
        mode: 'DISSOCIATE',
      });
      expect(r.map((x) => [x.trustDomain, x.status.name, x.status.message])).toEqual([
        ['delete.test', 'OK', 'OK'],
        ['delete.test', 'NOT_FOUND', 'bundle not found'],
        [own(), 'INVALID_ARGUMENT', 'removing the bundle for the server trust domain is not allowed'],
        ['Bad', 'INVALID_ARGUMENT', `trust domain argument is not valid: ${INVALID_TD_CHARS}`],
      ]);
      const unknownMode = await raw('bundle', 'BatchDeleteFederatedBundle', {
        trust_domains: ['x.test'],
        mode: 7,
      });
      expect(unknownMode.ok).toBe(false);
      expect(!unknownMode.ok && unknownMode.code).toBe('INVALID_ARGUMENT');
      expect(!unknownMode.ok && unknownMode.message).toMatch(/^failed to parse deletion mode: /);
    });

    it('CountBundles counts the own bundle and every federated one', async () => {
      const before = await spire.countBundles();
      await spire.batchSetFederatedBundle([
        await makeBundle('count-1.test'),
        await makeBundle('count-2.test'),
      ]);
      expect(await spire.countBundles()).toBe(before + 2);
      await spire.batchDeleteFederatedBundle(['count-1.test', 'count-2.test']);
      expect(await spire.countBundles()).toBe(before);
    });

    describe('federation relationships (read by the broker)', () => {
      const spiffeRel = (name: string, bundle?: WireBundle): WireFederationRelationship => ({
        trust_domain: name,
        bundle_endpoint_url: 'https://127.0.0.1:1/bundle',
        https_spiffe: { endpoint_spiffe_id: `spiffe://${name}/spire/server` },
        trust_domain_bundle: bundle ?? null,
      });

      it('creates relationships (raw) and reads them with the typed client', async () => {
        const bundle = await makeBundle('rel-spiffe.test', { sequence: 4n });
        const created = await raw<{ results: { status: { code: number; message: string } }[] }>(
          'trustDomain',
          'BatchCreateFederationRelationship',
          {
            federation_relationships: [
              spiffeRel('rel-spiffe.test', bundleToWire(bundle)),
              { trust_domain: 'rel-web.test', bundle_endpoint_url: 'https://127.0.0.1:2/', https_web: {} },
            ],
          },
        );
        expect(created.ok && created.value.results.map((r) => r.status)).toEqual([
          { code: 0, message: 'OK' },
          { code: 0, message: 'OK' },
        ]);
        const rel = await spire.getFederationRelationship('rel-spiffe.test');
        expect(rel.trustDomain.name).toBe('rel-spiffe.test');
        expect(rel.bundleEndpointUrl).toBe('https://127.0.0.1:1/bundle');
        expect(rel.profile).toEqual({
          type: 'https_spiffe',
          endpointSpiffeId: SpiffeId.parse('spiffe://rel-spiffe.test/spire/server'),
        });
        expect(rel.trustDomainBundle?.sequence).toBe(4n);
        // The bundle given with the relationship was stored as a federated bundle.
        expect((await spire.getFederatedBundle('rel-spiffe.test')).sequence).toBe(4n);
        const web = await spire.getFederationRelationship('rel-web.test');
        expect(web.profile).toEqual({ type: 'https_web' });
        expect(web.trustDomainBundle).toBeUndefined();
        // https_web travels as a present, zero-length field.
        const rawWeb = await raw<WireFederationRelationship>('trustDomain', 'GetFederationRelationship', {
          trust_domain: 'rel-web.test',
        });
        expect(rawWeb.ok && rawWeb.value.bundle_endpoint_profile).toBe('https_web');
      });

      it('lists relationships with the row-id paging scheme (trailing empty page)', async () => {
        const p1 = await spire.listFederationRelationshipsPage({ pageSize: 1 });
        expect(p1.relationships.map((r) => r.trustDomain.name)).toEqual(['rel-spiffe.test']);
        const p2 = await spire.listFederationRelationshipsPage({ pageSize: 1, pageToken: p1.nextPageToken });
        expect(p2.relationships.map((r) => r.trustDomain.name)).toEqual(['rel-web.test']);
        expect(p2.nextPageToken).not.toBe('');
        const p3 = await spire.listFederationRelationshipsPage({ pageSize: 1, pageToken: p2.nextPageToken });
        expect(p3).toEqual({ relationships: [], nextPageToken: '' });
        const all = await spire.listFederationRelationships({ pageSize: 1 });
        expect(all.map((r) => r.trustDomain.name)).toEqual(['rel-spiffe.test', 'rel-web.test']);
        const masked = await spire.listFederationRelationships({ fields: { bundleEndpointUrl: true } });
        expect(masked[0]).toEqual({
          trustDomain: td('rel-spiffe.test'),
          bundleEndpointUrl: 'https://127.0.0.1:1/bundle',
        });
      });

      it('answers NOT_FOUND / INVALID_ARGUMENT with SPIRE’s messages', async () => {
        await expectSpireError(
          spire.getFederationRelationship('rel-missing.test'),
          'ERR_SPIRE_NOT_FOUND',
          'federation relationship does not exist',
        );
        await expectSpireError(
          spire.getFederationRelationship('Bad'),
          'ERR_SPIRE_INVALID_ARGUMENT',
          `failed to parse trust domain: ${INVALID_TD_CHARS}`,
        );
      });

      it('refuses duplicates (INTERNAL, sqlite text), its own trust domain and non-https URLs per item', async () => {
        const r = await raw<{ results: { status: { code: number; message: string } }[] }>(
          'trustDomain',
          'BatchCreateFederationRelationship',
          {
            federation_relationships: [
              spiffeRel('rel-spiffe.test'),
              spiffeRel(own()),
              { ...spiffeRel('rel-http.test'), bundle_endpoint_url: 'http://127.0.0.1:1/' },
              { trust_domain: 'rel-none.test', bundle_endpoint_url: 'https://127.0.0.1:1/' },
            ],
          },
        );
        expect(r.ok && r.value.results.map((x) => x.status)).toEqual([
          {
            code: 13,
            message:
              'failed to create federation relationship: datastore-sql: UNIQUE constraint failed: federated_trust_domains.trust_domain',
          },
          { code: 3, message: 'unable to create federation relationship for server trust domain' },
          {
            code: 3,
            message:
              'failed to convert federation relationship: bundle endpoint URL must use the https scheme',
          },
          {
            code: 3,
            message:
              'failed to convert federation relationship: unsupported bundle endpoint profile type: <nil>',
          },
        ]);
      });

      it('deleting a relationship keeps its bundle', async () => {
        const r = await raw<{
          results: { status: { code: number; message: string }; trust_domain: string }[];
        }>('trustDomain', 'BatchDeleteFederationRelationship', {
          trust_domains: ['rel-spiffe.test', 'rel-spiffe.test', ''],
        });
        expect(r.ok && r.value.results).toEqual([
          { status: { code: 0, message: 'OK' }, trust_domain: 'rel-spiffe.test' },
          {
            status: { code: 5, message: 'federation relationship not found' },
            trust_domain: 'rel-spiffe.test',
          },
          { status: { code: 3, message: 'missing trust domain' }, trust_domain: '' },
        ]);
        expect(await spire.findFederatedBundle('rel-spiffe.test')).toBeDefined();
        await raw('trustDomain', 'BatchDeleteFederationRelationship', { trust_domains: ['rel-web.test'] });
        await spire.batchDeleteFederatedBundle(['rel-spiffe.test']);
      });
    });

    describe('MintX509SVID', () => {
      it('signs a CSR for a workload of its trust domain with a CA of its bundle', async () => {
        const keys = await generateKeyPair();
        const id = SpiffeId.parse(`spiffe://${own()}/broker`);
        const csr = await createCsr({ keys, id });
        const svid = await spire.mintX509Svid(csr, 600);
        expect(svid.id.toString()).toBe(id.toString());
        expect(svid.certChain.length).toBeGreaterThanOrEqual(1);
        const leaf = new X509Certificate(svid.certChain[0]!);
        expect(leaf.subjectAltName).toContain(`URI:${id.toString()}`);
        expect(leaf.ca).toBe(false);
        const now = Math.floor(Date.now() / 1000);
        expect(svid.expiresAt).toBeGreaterThan(now + 500);
        expect(svid.expiresAt).toBeLessThanOrEqual(now + 600 + 5);
        const bundle = await spire.getBundle();
        expect(
          bundle.x509Authorities.some(
            (a) => leaf.checkIssued(a.certificate) && leaf.verify(a.certificate.publicKey),
          ),
        ).toBe(true);
      });

      it('refuses CSRs exactly as SPIRE does', async () => {
        const keys = await generateKeyPair();
        const mint = (csr: Uint8Array) => spire.mintX509Svid(csr, 60);
        await expectSpireError(
          mint(new Uint8Array()),
          'ERR_SPIRE_INVALID_ARGUMENT',
          'INVALID_ARGUMENT: missing CSR',
        );
        await expectSpireError(
          mint(Buffer.from('garbage')),
          'ERR_SPIRE_INVALID_ARGUMENT',
          'INVALID_ARGUMENT: malformed CSR: ',
        );
        await expectSpireError(
          mint(await createCsr({ keys })),
          'ERR_SPIRE_INVALID_ARGUMENT',
          'CSR URI SAN is required',
        );
        await expectSpireError(
          mint(await createCsr({ keys, id: SpiffeId.parse('spiffe://other.test/w') })),
          'ERR_SPIRE_INVALID_ARGUMENT',
          `CSR URI SAN is invalid: "spiffe://other.test/w" is not a member of trust domain "${own()}"`,
        );
        await expectSpireError(
          mint(await createCsr({ keys, id: SpiffeId.parse(`spiffe://${own()}/spire/agent/x`) })),
          'ERR_SPIRE_INVALID_ARGUMENT',
          `CSR URI SAN is invalid: "spiffe://${own()}/spire/agent/x" is not a workload in trust domain "${own()}"; path is in the reserved namespace`,
        );
        await expectSpireError(
          mint(await createCsr({ keys, id: SpiffeId.parse(`spiffe://${own()}`) })),
          'ERR_SPIRE_INVALID_ARGUMENT',
          `CSR URI SAN is invalid: "spiffe://${own()}" is not a workload in trust domain "${own()}"; path is empty`,
        );
      });
    });

    describe('own bundle rotation', () => {
      it('prepare adds an authority and bumps the sequence; activate leaves the bundle alone', async () => {
        const b0 = await spire.getBundle();
        const x509Id = await t.prepareAuthority('x509');
        const b1 = await spire.getBundle();
        expect(b1.sequence).toBe(b0.sequence + 1n);
        expect(b1.x509Authorities).toHaveLength(b0.x509Authorities.length + 1);
        const jwtId = await t.prepareAuthority('jwt');
        const b2 = await spire.getBundle();
        expect(b2.sequence).toBe(b1.sequence + 1n);
        expect(b2.jwtAuthorities.size).toBe(b1.jwtAuthorities.size + 1);
        expect(b2.jwtAuthorities.has(jwtId)).toBe(true);
        await t.activateAuthority('x509', x509Id);
        await t.activateAuthority('jwt', jwtId);
        const b3 = await spire.getBundle();
        expect(b3.sequence).toBe(b2.sequence);
        // New SVIDs are signed by the newly active CA (the last one added).
        const keys = await generateKeyPair();
        const svid = await spire.mintX509Svid(
          await createCsr({ keys, id: SpiffeId.parse(`spiffe://${own()}/w`) }),
          60,
        );
        const leaf = new X509Certificate(svid.certChain[0]!);
        expect(leaf.checkIssued(b3.x509Authorities.at(-1)!.certificate)).toBe(true);
      });
    });

    describe('authorization and transport', () => {
      it('denies downstream-only RPCs to local callers', async () => {
        const r = await raw('bundle', 'PublishJWTAuthority', { jwt_authority: null });
        expect(r).toEqual({
          ok: false,
          code: 'PERMISSION_DENIED',
          message: 'authorization denied for method /spire.api.server.bundle.v1.Bundle/PublishJWTAuthority',
        });
      });

      it('refuses per-service health checks', async () => {
        const r = await raw('health', 'Check', { service: 'spire' });
        expect(r).toEqual({
          ok: false,
          code: 'INVALID_ARGUMENT',
          message: 'per-service health is not supported',
        });
      });

      it('AppendBundle refuses an empty request', async () => {
        const r = await raw('bundle', 'AppendBundle', {});
        expect(r).toEqual({ ok: false, code: 'INVALID_ARGUMENT', message: 'no authorities to append' });
      });

      it('serves admins over mTLS TCP, verifying the server as spiffe://<td>/spire/server', async () => {
        const admin = await t.mintSvid(t.adminId);
        const tls = {
          certChainPem: admin.certChainPem,
          privateKeyPem: admin.privateKeyPem,
          trustBundlePem: admin.bundlePem,
          serverTrustDomain: own(),
        };
        const c = new SpireServerClient({ address: t.tcpAddress, tls, retry: { maxAttempts: 1 } });
        try {
          expect(await c.countBundles()).toBeGreaterThanOrEqual(1);
          expect((await c.getBundle()).trustDomain.name).toBe(own());
          // Health is registered on the unix socket only.
          await expectSpireError(c.healthCheck(), 'ERR_SPIRE_UNIMPLEMENTED', 'UNIMPLEMENTED');
        } finally {
          c.close();
        }
        const wrongServer = new SpireServerClient({
          address: t.tcpAddress,
          tls: { ...tls, serverTrustDomain: 'someone-else.test' },
          retry: { maxAttempts: 1 },
        });
        try {
          await expectSpireError(
            wrongServer.countBundles(),
            'ERR_SPIRE_CREDENTIALS',
            `SPIRE server presented spiffe://${own()}/spire/server, expected spiffe://someone-else.test/spire/server`,
          );
        } finally {
          wrongServer.close();
        }
      });

      it('lets non-admin TCP callers only GetBundle', async () => {
        const other = await t.mintSvid(`spiffe://${own()}/not-admin`);
        const c = new SpireServerClient({
          address: t.tcpAddress,
          tls: {
            certChainPem: other.certChainPem,
            privateKeyPem: other.privateKeyPem,
            trustBundlePem: other.bundlePem,
            serverTrustDomain: own(),
          },
          retry: { maxAttempts: 1 },
        });
        try {
          expect((await c.getBundle()).trustDomain.name).toBe(own());
          await expectSpireError(
            c.countBundles(),
            'ERR_SPIRE_PERMISSION_DENIED',
            'authorization denied for method /spire.api.server.bundle.v1.Bundle/CountBundles',
          );
        } finally {
          c.close();
        }
      });
    });
  });
}
