import { beforeAll, describe, expect, it } from 'vitest';
import { createCa } from '../../../src/adapters/pki/index.js';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/index.js';
import { evaluatePeerBundle, type PeerPolicy } from '../../../src/core/policy/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import { keyPairSync } from '../../../src/platform/keygen.js';

// The persisted high-water mark (TDB §4.1.1 across restarts, issue 16 item 1): with no current
// bundle held (the last-known-good file was lost), the mark alone must refuse a rollback.
const td = TrustDomain.parse('partner.example');
const peer: PeerPolicy = { trustDomain: td, keyPolicy: {}, allowEmptyBundle: false };
const jwtKey = (kid: string) => jwtAuthority(kid, keyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
let ca: Uint8Array;

beforeAll(async () => {
  ca = (
    await createCa({ trustDomain: td, notBefore: new Date('2026-01-01'), notAfter: new Date('2027-01-01') })
  ).der;
});

function bundle(seq: bigint, kid = 'k1') {
  return TrustBundle.create({
    trustDomain: td,
    x509Authorities: [ca],
    jwtAuthorities: [jwtKey(kid)],
    sequence: seq,
  });
}

function code(d: ReturnType<typeof evaluatePeerBundle>): string | undefined {
  return d.accepted ? undefined : d.error.code;
}

describe('evaluatePeerBundle with a persisted sequence floor', () => {
  it.each([
    { floor: 5n, seq: 4n, want: 'ERR_POLICY_SEQUENCE_ROLLBACK' },
    { floor: 5n, seq: 1n, want: 'ERR_POLICY_SEQUENCE_ROLLBACK' },
    { floor: 5n, seq: 0n, want: 'ERR_POLICY_SEQUENCE_ROLLBACK' },
    { floor: 1n, seq: 0n, want: 'ERR_POLICY_SEQUENCE_ROLLBACK' },
    { floor: 5n, seq: 5n, want: undefined },
    { floor: 5n, seq: 6n, want: undefined },
    { floor: 0n, seq: 0n, want: undefined },
    { floor: 0n, seq: 3n, want: undefined },
  ])('floor $floor, no current bundle, candidate $seq → $want', ({ floor, seq, want }) => {
    expect(code(evaluatePeerBundle({ peer, candidate: bundle(seq), sequenceFloor: floor }))).toBe(want);
  });

  it('applies the floor even when the current bundle is older than the mark', () => {
    // The state file held sequence 3 while the mark says 7 (the bundle write failed after the mark).
    const d = evaluatePeerBundle({
      peer,
      current: bundle(3n),
      candidate: bundle(5n, 'k2'),
      sequenceFloor: 7n,
    });
    expect(code(d)).toBe('ERR_POLICY_SEQUENCE_ROLLBACK');
    if (!d.accepted) expect(d.error.message).toContain('high-water mark 7');
  });

  it('without a floor, behaves as before (first bundle accepted whatever its sequence)', () => {
    expect(code(evaluatePeerBundle({ peer, candidate: bundle(1n) }))).toBeUndefined();
  });
});
