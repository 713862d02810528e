/**
 * Key pair generation that is safe to export as JWK right away, on Node 20.
 *
 * node:crypto's `generateKeyPairSync` (and `subtle.generateKey`) return KeyObjects that share
 * their key with the generation job's native object, which lives until a GC collects it. A JWK
 * export takes that key's lock and allocates; if the allocation runs a GC that collects the job,
 * the job's destructor waits for the same lock, on the same thread: the process hangs for good
 * (reproduced with `generateKeyPairSync('ec')` + `publicKey.export({ format: 'jwk' })` in a
 * loop with `--max-semi-space-size=1`; it hung CI's test workers twice). Here the pair is
 * generated DER-encoded and parsed again, so the returned KeyObjects share nothing with the job.
 * @module
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

/** A private key and its public key. */
export interface KeyObjectPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

function reparse(pair: { privateKey: Buffer; publicKey: Buffer }): KeyObjectPair {
  return {
    privateKey: createPrivateKey({ key: pair.privateKey, format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: pair.publicKey, format: 'der', type: 'spki' }),
  };
}

/** `generateKeyPairSync` with the same arguments, minus the hang described above. */
export function keyPairSync(type: 'ec', options: { namedCurve: string }): KeyObjectPair;
export function keyPairSync(
  type: 'rsa',
  options: { modulusLength: number; publicExponent?: number },
): KeyObjectPair;
export function keyPairSync(type: 'ed25519' | 'ed448' | 'x25519'): KeyObjectPair;
export function keyPairSync(
  type: 'ec' | 'rsa' | 'ed25519' | 'ed448' | 'x25519',
  options?: { namedCurve: string } | { modulusLength: number; publicExponent?: number },
): KeyObjectPair {
  const spki = { type: 'spki', format: 'der' } as const;
  const pkcs8 = { type: 'pkcs8', format: 'der' } as const;
  if (type === 'ec') {
    const { namedCurve } = options as { namedCurve: string };
    return reparse(
      generateKeyPairSync('ec', { namedCurve, publicKeyEncoding: spki, privateKeyEncoding: pkcs8 }),
    );
  }
  if (type === 'rsa') {
    const { modulusLength, publicExponent } = options as { modulusLength: number; publicExponent?: number };
    return reparse(
      generateKeyPairSync('rsa', {
        modulusLength,
        ...(publicExponent !== undefined ? { publicExponent } : {}),
        publicKeyEncoding: spki,
        privateKeyEncoding: pkcs8,
      }),
    );
  }
  return reparse(
    generateKeyPairSync(type as 'ed25519', { publicKeyEncoding: spki, privateKeyEncoding: pkcs8 }),
  );
}
