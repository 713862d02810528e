import type { KeyObject } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa } from '../../../src/adapters/pki/index.js';
import {
  DEFAULT_MAX_BUNDLE_BYTES,
  DEFAULT_MAX_BUNDLE_KEYS,
  DEFAULT_MAX_BUNDLE_MAP_BYTES,
  DEFAULT_PEER_BUNDLE_BYTES,
  jwtAuthority,
  MAX_BUNDLE_MAP_TRUST_DOMAINS,
  marshalBundle,
  TrustBundle,
} from '../../../src/core/bundle/index.js';
import {
  checkKeyPolicy,
  describePublicKey,
  evaluatePeerBundle,
  MAX_ACCEPTED_BUNDLE_KEYS,
  type PeerPolicy,
  requireAllowlisted,
  resetSequenceBaseline,
} from '../../../src/core/policy/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import { parseAllowlist } from '../../../src/engine/config/index.js';
import { PolicyError } from '../../../src/errors.js';
import { keyPairSync } from '../../../src/platform/keygen.js';

const td = TrustDomain.parse('partner.example');
const peer: PeerPolicy = { trustDomain: td, keyPolicy: {}, allowEmptyBundle: false };

function pub(
  type: 'ec' | 'rsa' | 'ed25519' | 'ed448' | 'x25519',
  opt: Record<string, unknown> = {},
): KeyObject {
  // biome-ignore lint/suspicious/noExplicitAny: the overloads are keyed on the literal type
  return (keyPairSync as any)(type, opt).publicKey as KeyObject;
}

let caP256: Uint8Array;
let caP384: Uint8Array;
let caRsa: Uint8Array;
const jwtP256 = jwtAuthority('k-p256', pub('ec', { namedCurve: 'P-256' }));

beforeAll(async () => {
  const validity = { notBefore: new Date('2026-01-01'), notAfter: new Date('2027-01-01') };
  caP256 = (await createCa({ trustDomain: td, ...validity })).der;
  caP384 = (await createCa({ trustDomain: td, ...validity, keyAlg: 'ec-p384' })).der;
  caRsa = (await createCa({ trustDomain: td, ...validity, keyAlg: 'rsa-2048' })).der;
});

function bundle(opts: {
  x509?: Uint8Array[];
  jwt?: ReturnType<typeof jwtAuthority>[];
  seq?: bigint;
  hint?: number;
  td?: TrustDomain;
}) {
  return TrustBundle.create({
    trustDomain: opts.td ?? td,
    x509Authorities: opts.x509 ?? [caP256],
    jwtAuthorities: opts.jwt ?? [jwtP256],
    sequence: opts.seq ?? 0n,
    refreshHint: opts.hint ?? 0,
  });
}

function refusedCode(d: ReturnType<typeof evaluatePeerBundle>): string | undefined {
  if (d.accepted) return undefined;
  expect(d.error).toBeInstanceOf(PolicyError);
  return d.error.code;
}

describe('evaluatePeerBundle', () => {
  it('accepts a first bundle: everything added, changed', () => {
    const d = evaluatePeerBundle({ peer, candidate: bundle({ seq: 5n }) });
    expect(d.accepted).toBe(true);
    if (!d.accepted) return;
    expect(d.changed).toBe(true);
    expect(d.diff.x509Added).toHaveLength(1);
    expect(d.diff.jwtAdded).toEqual(['k-p256']);
  });

  it('reports unchanged when the candidate equals the current bundle', () => {
    const d = evaluatePeerBundle({ peer, current: bundle({ seq: 5n }), candidate: bundle({ seq: 5n }) });
    expect(d).toMatchObject({ accepted: true, changed: false });
  });

  it('refuses a bundle bound to another trust domain', () => {
    const other = TrustDomain.parse('other.example');
    const d = evaluatePeerBundle({ peer, candidate: bundle({ td: other, x509: [], jwt: [jwtP256] }) });
    expect(refusedCode(d)).toBe('ERR_POLICY_TRUST_DOMAIN_MISMATCH');
  });

  // SPIFFE Trust Domain and Bundle §4.1.1: the sequence only moves forward.
  it.each([
    { name: 'higher sequence', current: 5n, candidate: 6n, same: false, want: undefined },
    { name: 'jump ahead', current: 5n, candidate: 500n, same: false, want: undefined },
    { name: 'rollback', current: 5n, candidate: 4n, same: true, want: 'ERR_POLICY_SEQUENCE_ROLLBACK' },
    {
      name: 'rollback with new keys',
      current: 5n,
      candidate: 1n,
      same: false,
      want: 'ERR_POLICY_SEQUENCE_ROLLBACK',
    },
    {
      name: 'sequence dropped to unset',
      current: 5n,
      candidate: 0n,
      same: true,
      want: 'ERR_POLICY_SEQUENCE_ROLLBACK',
    },
    { name: 'same sequence, same content', current: 5n, candidate: 5n, same: true, want: undefined },
    {
      name: 'same sequence, new content',
      current: 5n,
      candidate: 5n,
      same: false,
      want: 'ERR_POLICY_SEQUENCE_REUSED',
    },
    // The smallest set sequence (1): a `> 1n` or `>= 2n` guard would wave these through.
    {
      name: 'rollback to unset with new keys from 1',
      current: 1n,
      candidate: 0n,
      same: false,
      want: 'ERR_POLICY_SEQUENCE_ROLLBACK',
    },
    { name: 'unset after 1', current: 1n, candidate: 0n, same: true, want: 'ERR_POLICY_SEQUENCE_ROLLBACK' },
    {
      name: 'reused 1 with new keys',
      current: 1n,
      candidate: 1n,
      same: false,
      want: 'ERR_POLICY_SEQUENCE_REUSED',
    },
    { name: 'same 1, same content', current: 1n, candidate: 1n, same: true, want: undefined },
    { name: 'forward from 1', current: 1n, candidate: 2n, same: false, want: undefined },
    { name: 'peer never sequences', current: 0n, candidate: 0n, same: false, want: undefined },
    { name: 'peer starts sequencing', current: 0n, candidate: 3n, same: false, want: undefined },
  ])('$name: $current → $candidate', ({ current, candidate, same, want }) => {
    const cur = bundle({ seq: current });
    const cand = same ? bundle({ seq: candidate }) : bundle({ seq: candidate, x509: [caP256, caP384] });
    expect(refusedCode(evaluatePeerBundle({ peer, current: cur, candidate: cand }))).toBe(want);
  });

  it('accepts a changed refresh hint under the same sequence (it carries no trust)', () => {
    const d = evaluatePeerBundle({
      peer,
      current: bundle({ seq: 5n, hint: 60 }),
      candidate: bundle({ seq: 5n, hint: 300 }),
    });
    expect(d).toMatchObject({ accepted: true, changed: true });
  });

  it('resetSequenceBaseline lets the operator accept a restarted sequence, diffed against the current keys', () => {
    const current = bundle({ seq: 900n });
    const candidate = bundle({ seq: 1n, x509: [caP256, caP384] });
    expect(refusedCode(evaluatePeerBundle({ peer, current, candidate }))).toBe(
      'ERR_POLICY_SEQUENCE_ROLLBACK',
    );
    const d = evaluatePeerBundle({ peer, current: resetSequenceBaseline(current), candidate });
    expect(d.accepted).toBe(true);
    if (d.accepted) expect(d.diff.x509Added).toHaveLength(1);
  });

  it('refuses an empty bundle unless allowEmptyBundle (TDB §4.1.3)', () => {
    const empty = bundle({ x509: [], jwt: [], seq: 6n });
    const current = bundle({ seq: 5n });
    expect(refusedCode(evaluatePeerBundle({ peer, current, candidate: empty }))).toBe(
      'ERR_POLICY_EMPTY_BUNDLE_REFUSED',
    );
    const d = evaluatePeerBundle({ peer: { ...peer, allowEmptyBundle: true }, current, candidate: empty });
    expect(d.accepted).toBe(true);
    if (d.accepted) expect(d.diff.x509Removed).toHaveLength(1);
  });

  it('checks rollback before emptiness', () => {
    const empty = bundle({ x509: [], jwt: [], seq: 1n });
    expect(refusedCode(evaluatePeerBundle({ peer, current: bundle({ seq: 5n }), candidate: empty }))).toBe(
      'ERR_POLICY_SEQUENCE_ROLLBACK',
    );
  });

  it('takes a parsed allowlist entry as is (PeerConfig satisfies PeerPolicy)', () => {
    const allowlist = parseAllowlist(`apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: partner.example
    bundleEndpoint: { urls: [https://p.example], profile: https_web }
    keyPolicy: { maxKeys: 1 }
`);
    const entry = requireAllowlisted(allowlist.peers, td);
    expect(refusedCode(evaluatePeerBundle({ peer: entry, candidate: bundle({}) }))).toBe(
      'ERR_POLICY_TOO_MANY_KEYS',
    );
    expect(() => requireAllowlisted(allowlist.peers, TrustDomain.parse('x.example'))).toThrow(
      expect.objectContaining({ code: 'ERR_POLICY_NOT_ALLOWLISTED' }),
    );
  });
});

describe('per-peer bundle size and key count (the Bundle Map consumers must always hold them)', () => {
  const shared = pub('ec', { namedCurve: 'P-256' });
  /** A bundle of `n` JWT authorities with `kidLength`-byte key IDs (one key, many kids: cheap). */
  const wide = (n: number, kidLength = 200) =>
    bundle({
      x509: [],
      jwt: Array.from({ length: n }, (_, i) => jwtAuthority(`${i}-`.padEnd(kidLength, 'k'), shared)),
      seq: 1n,
    });
  const served = (b: TrustBundle) => Buffer.byteLength(marshalBundle(b, { refreshHint: 0 }));

  it('refuses a bundle larger than maxBundleBytes as served, 64 KiB by default', () => {
    const small = wide(100);
    const big = wide(250);
    expect(served(small)).toBeLessThan(DEFAULT_PEER_BUNDLE_BYTES);
    expect(served(big)).toBeGreaterThan(DEFAULT_PEER_BUNDLE_BYTES);
    expect(evaluatePeerBundle({ peer, candidate: small }).accepted).toBe(true);
    const d = evaluatePeerBundle({ peer, candidate: big });
    expect(refusedCode(d)).toBe('ERR_POLICY_BUNDLE_TOO_LARGE');
    if (!d.accepted) {
      expect(d.error.message).toBe(
        `partner.example: bundle is ${served(big)} bytes as served; the key policy allows at most 65536 (maxBundleBytes)`,
      );
    }
    const roomy: PeerPolicy = { ...peer, keyPolicy: { maxBundleBytes: 128 * 1024 } };
    expect(evaluatePeerBundle({ peer: roomy, candidate: big }).accepted).toBe(true);
    const tight: PeerPolicy = { ...peer, keyPolicy: { maxBundleBytes: served(small) - 1 } };
    expect(refusedCode(evaluatePeerBundle({ peer: tight, candidate: small }))).toBe(
      'ERR_POLICY_BUNDLE_TOO_LARGE',
    );
  });

  it('refuses a bundle just under the 1 MiB fetch cap (it would have cut off every map consumer)', () => {
    const huge = wide(2500, 256);
    expect(served(huge)).toBeGreaterThan(950 * 1024);
    expect(served(huge)).toBeLessThan(DEFAULT_MAX_BUNDLE_BYTES);
    expect(refusedCode(evaluatePeerBundle({ peer, candidate: huge }))).toBe('ERR_POLICY_TOO_MANY_KEYS');
    const fewerKeys = wide(900, 256);
    expect(served(fewerKeys)).toBeGreaterThan(4 * DEFAULT_PEER_BUNDLE_BYTES);
    expect(refusedCode(evaluatePeerBundle({ peer, candidate: fewerKeys }))).toBe(
      'ERR_POLICY_BUNDLE_TOO_LARGE',
    );
  });

  it('never accepts more authorities than a Bundle Map consumer takes per bundle, whatever maxKeys says', () => {
    const lax: PeerPolicy = { ...peer, keyPolicy: { maxKeys: 10_000, maxBundleBytes: 16 * 1024 * 1024 } };
    expect(MAX_ACCEPTED_BUNDLE_KEYS).toBe(DEFAULT_MAX_BUNDLE_KEYS);
    expect(evaluatePeerBundle({ peer: lax, candidate: wide(MAX_ACCEPTED_BUNDLE_KEYS, 8) }).accepted).toBe(
      true,
    );
    const d = evaluatePeerBundle({ peer: lax, candidate: wide(MAX_ACCEPTED_BUNDLE_KEYS + 1, 8) });
    expect(refusedCode(d)).toBe('ERR_POLICY_TOO_MANY_KEYS');
  });

  it('the map consumers default limit holds the documented maximum map', () => {
    // 1,024 trust domains of the longest name (255), each bundle at the per-peer default cap.
    const entry = 2 + 255 + 1 + DEFAULT_PEER_BUNDLE_BYTES + 1;
    const envelope = '{"trust_domains":{}}'.length;
    expect(DEFAULT_MAX_BUNDLE_MAP_BYTES).toBeGreaterThanOrEqual(
      MAX_BUNDLE_MAP_TRUST_DOMAINS * entry + envelope,
    );
    expect(MAX_BUNDLE_MAP_TRUST_DOMAINS).toBeGreaterThanOrEqual(1024);
  });
});

describe('checkKeyPolicy', () => {
  it.each([
    {
      name: 'defaults accept P-256/P-384/RSA-2048/Ed25519',
      b: () => bundle({ x509: [caP256, caP384, caRsa], jwt: [jwtP256, jwtAuthority('ed', pub('ed25519'))] }),
      policy: {},
      want: undefined,
    },
    {
      name: 'maxKeys counts X.509 and JWT',
      b: () => bundle({}),
      policy: { maxKeys: 1 },
      want: 'ERR_POLICY_TOO_MANY_KEYS',
    },
    { name: 'maxKeys at the limit', b: () => bundle({}), policy: { maxKeys: 2 }, want: undefined },
    {
      name: 'X.509 curve not allowed',
      b: () => bundle({ x509: [caP384] }),
      policy: { allowedCurves: ['P-256'] },
      want: 'ERR_POLICY_KEY_TYPE',
    },
    {
      name: 'X.509 RSA when only EC allowed',
      b: () => bundle({ x509: [caRsa] }),
      policy: { allowedKeyTypes: ['EC'] as const },
      want: 'ERR_POLICY_KEY_TYPE',
    },
    {
      name: 'X.509 RSA below minimum',
      b: () => bundle({ x509: [caRsa] }),
      policy: { minRsaBits: 3072 },
      want: 'ERR_POLICY_RSA_TOO_SMALL',
    },
    {
      name: 'JWT RSA-1024 below default minimum',
      b: () => bundle({ jwt: [jwtAuthority('r', pub('rsa', { modulusLength: 1024 }))] }),
      policy: {},
      want: 'ERR_POLICY_RSA_TOO_SMALL',
    },
    {
      name: 'JWT secp256k1 not a default curve',
      b: () => bundle({ jwt: [jwtAuthority('k1', pub('ec', { namedCurve: 'secp256k1' }))] }),
      policy: {},
      want: 'ERR_POLICY_KEY_TYPE',
    },
    {
      name: 'JWT Ed448 only when allowed',
      b: () => bundle({ jwt: [jwtAuthority('e', pub('ed448'))] }),
      policy: {},
      want: 'ERR_POLICY_KEY_TYPE',
    },
    {
      name: 'JWT Ed448 allowed explicitly',
      b: () => bundle({ x509: [], jwt: [jwtAuthority('e', pub('ed448'))] }),
      policy: { allowedCurves: ['Ed448'] },
      want: undefined,
    },
    {
      name: 'JWT OKP not allowed',
      b: () => bundle({ jwt: [jwtAuthority('e', pub('ed25519'))] }),
      policy: { allowedKeyTypes: ['EC', 'RSA'] as const },
      want: 'ERR_POLICY_KEY_TYPE',
    },
    {
      name: 'X25519 cannot sign',
      b: () => bundle({ jwt: [jwtAuthority('x', pub('x25519'))] }),
      policy: {},
      want: 'ERR_POLICY_KEY_TYPE',
    },
  ])('$name', ({ b, policy, want }) => {
    expect(checkKeyPolicy(b(), policy)?.code).toBe(want);
  });

  it('names the offending authority', () => {
    const err = checkKeyPolicy(
      bundle({ jwt: [jwtAuthority('weak-key', pub('rsa', { modulusLength: 1024 }))] }),
      {},
    );
    expect(err?.message).toContain('JWT authority "weak-key" is a 1024-bit RSA key; the minimum is 2048');
  });

  it('describes keys in JOSE terms', () => {
    expect(describePublicKey(pub('ec', { namedCurve: 'P-521' }))).toMatchObject({
      kty: 'EC',
      curve: 'P-521',
    });
    expect(describePublicKey(pub('rsa', { modulusLength: 1024 }))).toMatchObject({ kty: 'RSA', bits: 1024 });
    expect(describePublicKey(pub('ed25519'))).toMatchObject({ kty: 'OKP', curve: 'Ed25519' });
    expect(describePublicKey(pub('x25519'))).toMatchObject({ kty: undefined, nodeType: 'x25519' });
  });
});
