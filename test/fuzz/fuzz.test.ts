import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { expectCodedError, FuzzFailure, type FuzzTarget, fuzzTargets, mutate } from './targets.js';

/**
 * The fuzz targets of scripts/fuzz.ts with fewer cases (FUZZ_RUNS, default 1,500 each) and a fixed
 * seed (FUZZ_SEED), so CI is reproducible: every outcome a value or a coded, documented error.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);
const SEED = Number(process.env.FUZZ_SEED ?? 20261123);

let targets: FuzzTarget[] = [];
beforeAll(async () => {
  targets = await fuzzTargets();
});

describe('fuzz targets (CI size)', () => {
  it('has the six targets', () => {
    expect(targets.map((t) => t.name)).toEqual([
      'bundle parse',
      'bundle map parse',
      'allowlist parse',
      'broker config parse',
      'X509-SVID verify (DER chains)',
      'JWT-SVID verify (tokens)',
    ]);
  });

  for (const name of [
    'bundle parse',
    'bundle map parse',
    'allowlist parse',
    'broker config parse',
    'X509-SVID verify (DER chains)',
    'JWT-SVID verify (tokens)',
  ]) {
    it(`${name}: ${RUNS} cases, a value or a coded error`, { timeout: 120_000 }, () => {
      const target = targets.find((t) => t.name === name)!;
      const outcomes = new Map<string, number>();
      fc.assert(
        fc.property(target.arbitrary, (input) => {
          const o = target.run(input as never);
          outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
        }),
        { numRuns: RUNS, seed: SEED },
      );
      // The generators reach both sides: some inputs are accepted, some refused.
      expect(outcomes.size).toBe(2);
    });
  }
});

describe('the property itself can fail', () => {
  it('an uncoded exception, or an undocumented code, is a FuzzFailure', () => {
    expect(() => expectCodedError(new Error('boom'))).toThrow(FuzzFailure);
    expect(() => expectCodedError(new BrokerError('ERR_NOT_A_REAL_CODE' as never, 'x'))).toThrow(
      /does not document/,
    );
    expect(() => expectCodedError(new BrokerError('ERR_BUNDLE_X5C_CERTIFICATE', 'x'))).not.toThrow();
  });

  it('mutations change bytes as described', () => {
    const base = Uint8Array.from([1, 2, 3, 4]);
    expect([...mutate(base, [{ op: 'flip', at: 1, value: 9 }])]).toEqual([1, 9, 3, 4]);
    expect([...mutate(base, [{ op: 'truncate', at: 2 }])]).toEqual([1, 2]);
    expect([...mutate(base, [{ op: 'delete', at: 1, length: 2 }])]).toEqual([1, 4]);
    expect([...mutate(base, [{ op: 'insert', at: 4, bytes: Uint8Array.from([7]) }])]).toEqual([
      1, 2, 3, 4, 7,
    ]);
  });
});
