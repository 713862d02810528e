import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_SPIFFE_ID_LENGTH,
  matchAny,
  matchId,
  matchMemberOf,
  matchOneOf,
  SpiffeId,
  TrustDomain,
} from '../../../src/core/spiffeid/index.js';
import { SpiffeIdError } from '../../../src/errors.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(SpiffeIdError);
    return (err as SpiffeIdError).code;
  }
}

describe('TrustDomain.parse', () => {
  it.each(['example.org', 'a', 'td-1_x.test', '0', 'x'.repeat(255)])('accepts %s', (name) => {
    expect(TrustDomain.parse(name).name).toBe(name);
  });

  it.each([
    ['', 'ERR_SPIFFEID_TRUST_DOMAIN_MISSING'],
    ['Example.org', 'ERR_SPIFFEID_TRUST_DOMAIN_CHARS'],
    ['exa mple', 'ERR_SPIFFEID_TRUST_DOMAIN_CHARS'],
    ['example.org:8443', 'ERR_SPIFFEID_PORT'],
    ['user@example.org', 'ERR_SPIFFEID_USERINFO'],
    ['spiffe://example.org', 'ERR_SPIFFEID_PORT'],
    ['x'.repeat(256), 'ERR_SPIFFEID_TRUST_DOMAIN_TOO_LONG'],
    ['ex%41mple', 'ERR_SPIFFEID_TRUST_DOMAIN_CHARS'],
  ])('refuses %j with %s', (name, code) => {
    expect(codeOf(() => TrustDomain.parse(name))).toBe(code);
    expect(TrustDomain.tryParse(name)).toBeUndefined();
  });

  it('parseNameOrId accepts SPIRE-style inputs', () => {
    expect(TrustDomain.parseNameOrId('spiffe://example.org/x/y').name).toBe('example.org');
    expect(TrustDomain.parseNameOrId('example.org').name).toBe('example.org');
    expect(codeOf(() => TrustDomain.parseNameOrId('https://example.org'))).toBe('ERR_SPIFFEID_SCHEME');
  });

  it('idString and equality', () => {
    const a = TrustDomain.parse('example.org');
    expect(a.idString()).toBe('spiffe://example.org');
    expect(a.equals(TrustDomain.parse('example.org'))).toBe(true);
    expect(a.equals(TrustDomain.parse('example.com'))).toBe(false);
    expect(JSON.stringify({ a })).toBe('{"a":"example.org"}');
  });
});

describe('SpiffeId.parse', () => {
  it.each([
    ['spiffe://example.org', 'example.org', ''],
    ['spiffe://example.org/workload', 'example.org', '/workload'],
    ['spiffe://example.org/ns/Prod/sa/web-1_x.y', 'example.org', '/ns/Prod/sa/web-1_x.y'],
    ['spiffe://td/...', 'td', '/...'],
  ])('accepts %s', (s, td, path) => {
    const id = SpiffeId.parse(s);
    expect(id.trustDomain.name).toBe(td);
    expect(id.path).toBe(path);
    expect(id.toString()).toBe(s);
  });

  it.each([
    ['', 'ERR_SPIFFEID_EMPTY'],
    ['example.org/workload', 'ERR_SPIFFEID_SCHEME'],
    ['SPIFFE://example.org', 'ERR_SPIFFEID_SCHEME'],
    ['spiffe:/example.org', 'ERR_SPIFFEID_SCHEME'],
    ['https://example.org/x', 'ERR_SPIFFEID_SCHEME'],
    ['spiffe://', 'ERR_SPIFFEID_TRUST_DOMAIN_MISSING'],
    ['spiffe:///path', 'ERR_SPIFFEID_TRUST_DOMAIN_MISSING'],
    ['spiffe://Example.org/x', 'ERR_SPIFFEID_TRUST_DOMAIN_CHARS'],
    ['spiffe://example.org:443/x', 'ERR_SPIFFEID_PORT'],
    ['spiffe://user@example.org/x', 'ERR_SPIFFEID_USERINFO'],
    ['spiffe://example.org/x?y=1', 'ERR_SPIFFEID_QUERY'],
    ['spiffe://example.org?y=1', 'ERR_SPIFFEID_QUERY'],
    ['spiffe://example.org/x#frag', 'ERR_SPIFFEID_FRAGMENT'],
    ['spiffe://example.org#frag', 'ERR_SPIFFEID_FRAGMENT'],
    ['spiffe://example.org/', 'ERR_SPIFFEID_TRAILING_SLASH'],
    ['spiffe://example.org/a/', 'ERR_SPIFFEID_TRAILING_SLASH'],
    ['spiffe://example.org//a', 'ERR_SPIFFEID_EMPTY_SEGMENT'],
    ['spiffe://example.org/a//b', 'ERR_SPIFFEID_EMPTY_SEGMENT'],
    ['spiffe://example.org/./a', 'ERR_SPIFFEID_DOT_SEGMENT'],
    ['spiffe://example.org/a/..', 'ERR_SPIFFEID_DOT_SEGMENT'],
    ['spiffe://example.org/a%20b', 'ERR_SPIFFEID_PATH_CHARS'],
    ['spiffe://example.org/a b', 'ERR_SPIFFEID_PATH_CHARS'],
    ['spiffe://example.org/ü', 'ERR_SPIFFEID_PATH_CHARS'],
    [`spiffe://example.org/${'a'.repeat(MAX_SPIFFE_ID_LENGTH)}`, 'ERR_SPIFFEID_TOO_LONG'],
  ])('refuses %j with %s', (s, code) => {
    expect(codeOf(() => SpiffeId.parse(s))).toBe(code);
    expect(SpiffeId.tryParse(s)).toBeUndefined();
  });

  it('fromPath and memberOf', () => {
    const td = TrustDomain.parse('example.org');
    const id = SpiffeId.fromPath(td, '/spiffe-broker');
    expect(id.toString()).toBe('spiffe://example.org/spiffe-broker');
    expect(id.memberOf(td)).toBe(true);
    expect(id.memberOf(TrustDomain.parse('other.org'))).toBe(false);
    expect(() => SpiffeId.fromPath(td, 'no-slash')).toThrow(SpiffeIdError);
  });

  it('property: every generated valid ID round-trips', () => {
    const tdChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789.-_'.split(''));
    const pathChar = fc.constantFrom(...'abcXYZ019.-_'.split(''));
    const seg = fc
      .array(pathChar, { minLength: 1, maxLength: 8 })
      .map((a) => a.join(''))
      .filter((s) => s !== '.' && s !== '..');
    fc.assert(
      fc.property(
        fc.array(tdChar, { minLength: 1, maxLength: 30 }).map((a) => a.join('')),
        fc.array(seg, { maxLength: 5 }),
        (td, segs) => {
          const s = `spiffe://${td}${segs.map((x) => `/${x}`).join('')}`;
          const id = SpiffeId.parse(s);
          expect(id.toString()).toBe(s);
          expect(id.trustDomain.name).toBe(td);
        },
      ),
    );
  });

  it('property: arbitrary strings either parse or throw a coded SpiffeIdError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        const input = `spiffe://${s}`;
        try {
          SpiffeId.parse(input);
        } catch (err) {
          expect(err).toBeInstanceOf(SpiffeIdError);
          expect((err as SpiffeIdError).code).toMatch(/^ERR_SPIFFEID_/);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('matchers', () => {
  const a = SpiffeId.parse('spiffe://a.test/x');
  const b = SpiffeId.parse('spiffe://a.test/y');
  const c = SpiffeId.parse('spiffe://b.test/x');
  it('matchId', () => {
    const m = matchId(a);
    expect([m(a), m(b), m(c)]).toEqual([true, false, false]);
    expect(m.description).toContain('spiffe://a.test/x');
  });
  it('matchOneOf', () => {
    const m = matchOneOf(a, c);
    expect([m(a), m(b), m(c)]).toEqual([true, false, true]);
    expect(() => matchOneOf()).toThrow(TypeError);
  });
  it('matchMemberOf', () => {
    const m = matchMemberOf(TrustDomain.parse('a.test'));
    expect([m(a), m(b), m(c)]).toEqual([true, true, false]);
  });
  it('matchAny', () => {
    expect(matchAny()(c)).toBe(true);
  });
});
