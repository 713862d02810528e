import { describe, expect, it } from 'vitest';
import { EmulatorDatastore, type StoredBundle } from '../../../src/adapters/spire/emulator/datastore.js';
import {
  GO_SPIFFE_ERRORS,
  goSpiffeIdFromString,
  goTrustDomainFromString,
  goValidatePath,
} from '../../../src/adapters/spire/emulator/go-spiffe.js';

const bundle = (trustDomain: string, sequence = 0n): StoredBundle => ({
  trustDomain,
  x509: [{ der: Uint8Array.of(1, 2, 3), tainted: false }],
  jwt: [],
  refreshHint: 0n,
  sequence,
});

describe('EmulatorDatastore paging (SPIRE sqlstore semantics)', () => {
  it('pages by row id with a token after every non-empty page', () => {
    const ds = new EmulatorDatastore();
    for (const n of ['a', 'b', 'c']) ds.createBundle(bundle(n));
    const p1 = ds.listBundles({ size: 2, token: '' });
    expect(p1).toEqual({ items: [bundle('a'), bundle('b')], token: '2' });
    const p2 = ds.listBundles({ size: 2, token: '2' });
    expect(p2).toEqual({ items: [bundle('c')], token: '3' });
    expect(ds.listBundles({ size: 2, token: '3' })).toEqual({ items: [], token: '' });
    expect(ds.listBundles()).toEqual({ items: [bundle('a'), bundle('b'), bundle('c')] });
  });

  it('keeps row ids on update and set; new rows after deletes get new ids', () => {
    const ds = new EmulatorDatastore();
    ds.createBundle(bundle('a'));
    ds.createBundle(bundle('b'));
    ds.setBundle(bundle('a', 5n));
    expect(ds.deleteBundle('b', 'RESTRICT')).toBe('ok');
    ds.setBundle(bundle('b'));
    const page = ds.listBundles({ size: 10, token: '1' });
    expect(page).toEqual({ items: [bundle('b')], token: '3' });
  });

  it('refuses tokens that are not decimal uint32', () => {
    const ds = new EmulatorDatastore();
    for (const t of ['x', '-1', '1.0', '4294967296', ' 1']) {
      expect(ds.listBundles({ size: 1, token: t })).toEqual({ badToken: t });
    }
    expect(ds.listBundles({ size: 1, token: '4294967295' })).toEqual({ items: [], token: '' });
  });

  it('appends only new entries and bumps the sequence once per change', () => {
    const ds = new EmulatorDatastore();
    ds.createBundle(bundle('a', 1n));
    expect(ds.appendBundle(bundle('a')).sequence).toBe(1n);
    const more = { ...bundle('a'), x509: [{ der: Uint8Array.of(9), tainted: false }] };
    expect(ds.appendBundle(more).sequence).toBe(2n);
    expect(ds.fetchBundle('a')?.x509).toHaveLength(2);
  });

  it('returns copies, never its own rows', () => {
    const ds = new EmulatorDatastore();
    ds.createBundle(bundle('a'));
    const got = ds.fetchBundle('a')!;
    (got.x509[0]!.der as Uint8Array)[0] = 42;
    expect(ds.fetchBundle('a')!.x509[0]!.der[0]).toBe(1);
  });
});

describe('go-spiffe compatible parsing', () => {
  it('parses trust domains the way SPIRE does', () => {
    expect(goTrustDomainFromString('example.org')).toEqual({ ok: true, value: 'example.org' });
    expect(goTrustDomainFromString('spiffe://example.org/a/b')).toEqual({ ok: true, value: 'example.org' });
    expect(goTrustDomainFromString('')).toEqual({ ok: false, error: GO_SPIFFE_ERRORS.missingTrustDomain });
    expect(goTrustDomainFromString('Example.org')).toEqual({
      ok: false,
      error: GO_SPIFFE_ERRORS.badTrustDomainChar,
    });
    expect(goTrustDomainFromString('spiffe:/x')).toEqual({ ok: false, error: GO_SPIFFE_ERRORS.wrongScheme });
    expect(goTrustDomainFromString('spiffe:///x')).toEqual({
      ok: false,
      error: GO_SPIFFE_ERRORS.missingTrustDomain,
    });
    // No length limit in go-spiffe.
    expect(goTrustDomainFromString('a'.repeat(300)).ok).toBe(true);
  });

  it('validates paths with go-spiffe’s messages', () => {
    expect(goValidatePath('')).toBeUndefined();
    expect(goValidatePath('/a/B_c-d.e')).toBeUndefined();
    expect(goValidatePath('a')).toBe(GO_SPIFFE_ERRORS.noLeadingSlash);
    expect(goValidatePath('/a//b')).toBe(GO_SPIFFE_ERRORS.emptySegment);
    expect(goValidatePath('/a/./b')).toBe(GO_SPIFFE_ERRORS.dotSegment);
    expect(goValidatePath('/a/..')).toBe(GO_SPIFFE_ERRORS.dotSegment);
    expect(goValidatePath('/a/')).toBe(GO_SPIFFE_ERRORS.trailingSlash);
    expect(goValidatePath('/a b')).toBe(GO_SPIFFE_ERRORS.badPathSegmentChar);
    expect(goSpiffeIdFromString('spiffe://td/p')).toEqual({
      ok: true,
      value: { trustDomain: 'td', path: '/p' },
    });
    expect(goSpiffeIdFromString('')).toEqual({ ok: false, error: GO_SPIFFE_ERRORS.empty });
  });
});
