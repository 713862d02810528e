import { describe, expect, it } from 'vitest';
import { evaluateIfNoneMatch, preferredWaitSeconds } from '../../../src/adapters/endpoint/conditional.js';

const ETAG = '"abc123"';

describe('evaluateIfNoneMatch (RFC 9110 §13.1.2)', () => {
  it.each([
    [undefined, 'absent'],
    ['*', 'any'],
    [' * ', 'any'],
    ['"abc123"', 'match'],
    ['W/"abc123"', 'match'],
    ['"x", "abc123"', 'match'],
    ['"x",W/"abc123" ', 'match'],
    [['"x"', '"abc123"'], 'match'],
    ['"abc1234"', 'no-match'],
    ['abc123', 'no-match'],
    ['"x", "y"', 'no-match'],
    ['', 'no-match'],
  ] as const)('%j → %s', (header, want) => {
    expect(evaluateIfNoneMatch(header as string | string[] | undefined, ETAG)).toBe(want);
  });
});

describe('preferredWaitSeconds (RFC 7240 §4.3)', () => {
  it.each([
    [undefined, undefined],
    ['wait=10', 10],
    ['WAIT = 10', 10],
    ['respond-async, wait=5', 5],
    ['wait=5; foo=bar', 5],
    ['wait="7"', 7],
    ['wait=0', 0],
    ['wait=3600', 60],
    ['wait=99999999999', undefined],
    ['wait=-1', undefined],
    ['wait=1.5', undefined],
    ['wait', undefined],
    ['return=minimal', undefined],
    ['wait=2, wait=9', 2],
    [['return=minimal', 'wait=4'], 4],
  ] as const)('%j → %s', (header, want) => {
    expect(preferredWaitSeconds(header as string | string[] | undefined, 60)).toBe(want);
  });
});
