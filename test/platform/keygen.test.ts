/**
 * keyPairSync: node:crypto key pairs that share nothing with their generation job (see
 * src/platform/keygen.ts for the Node 20 hang it avoids; the lint rule in biome.json keeps
 * generateKeyPairSync and generateKeyPair out of every other file).
 */
import { createPublicKey, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyPairSync } from '../../src/platform/keygen.js';

describe('keyPairSync', () => {
  it('returns matching pairs of each type, with the parameters asked for', () => {
    const pairs = [
      [keyPairSync('ec', { namedCurve: 'P-384' }), 'ec', 'sha384'],
      [keyPairSync('rsa', { modulusLength: 1024, publicExponent: 3 }), 'rsa', 'sha256'],
      [keyPairSync('ed25519'), 'ed25519', null],
      [keyPairSync('ed448'), 'ed448', null],
    ] as const;
    for (const [pair, type, hash] of pairs) {
      expect(pair.privateKey.type).toBe('private');
      expect(pair.publicKey.type).toBe('public');
      expect(pair.publicKey.asymmetricKeyType).toBe(type);
      // The public key is the private key's own, and both export as JWK.
      expect(pair.publicKey.export({ format: 'jwk' })).toEqual(
        createPublicKey(pair.privateKey).export({ format: 'jwk' }),
      );
      expect(pair.privateKey.export({ format: 'jwk' })).toHaveProperty('d');
      const data = Buffer.from('signed');
      expect(verify(hash, data, pair.publicKey, sign(hash, data, pair.privateKey))).toBe(true);
    }
    expect(pairs[0][0].publicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
    expect(pairs[1][0].publicKey.asymmetricKeyDetails).toMatchObject({
      modulusLength: 1024,
      publicExponent: 3n,
    });
  });
});
