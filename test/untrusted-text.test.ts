import { describe, expect, it } from 'vitest';
import { quoteUntrusted, untrustedText } from '../src/untrusted-text.js';

describe('untrustedText', () => {
  it('escapes C0, DEL, C1, line separators and bidi controls, keeping other text', () => {
    expect(untrustedText('kid\u001b[2J\u0007\r\nx\u007f\u0085\u2028\u202e\u2066é😀')).toBe(
      'kid\\u001b[2J\\u0007\\u000d\\u000ax\\u007f\\u0085\\u2028\\u202e\\u2066é😀',
    );
  });

  it('bounds the length and says how much was cut', () => {
    expect(untrustedText('x'.repeat(1000), 8)).toBe('xxxxxxxx…(+992 chars)');
    expect(untrustedText('short', 8)).toBe('short');
    expect(untrustedText('x'.repeat(100_000)).length).toBeLessThan(300);
  });

  it('never splits a surrogate pair and escapes lone surrogates', () => {
    expect(untrustedText('😀😀', 3)).toBe('😀…(+2 chars)');
    expect(untrustedText('a\ud800b\udc00')).toBe('a\\ud800b\\udc00');
  });

  it('quotes like JSON and converts non-strings', () => {
    expect(quoteUntrusted('a"b\\c\n')).toBe('"a\\"b\\\\c\\u000a"');
    expect(untrustedText(42)).toBe('42');
    expect(() => untrustedText('x', -1)).toThrow(TypeError);
  });
});
