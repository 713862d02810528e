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

/** A freshly generated pair, DER-encoded: PKCS#8 private key, SPKI public key. */
export interface DerKeyPair {
  readonly privateKey: Buffer;
  readonly publicKey: Buffer;
}

/** Key types and their generation options, as node:crypto names them. */
export type KeyPairSpec =
  | { readonly type: 'ec'; readonly namedCurve: string }
  | { readonly type: 'rsa'; readonly modulusLength: number; readonly publicExponent?: number }
  | { readonly type: 'ed25519' | 'ed448' | 'x25519' };

/**
 * Generates a pair as DER bytes only: no KeyObject of the generation job ever reaches the caller
 * (what {@link keyPairSync} builds on, and what a caller that wants bytes should use).
 */
export function derKeyPairSync(spec: KeyPairSpec): DerKeyPair {
  const spki = { type: 'spki', format: 'der' } as const;
  const pkcs8 = { type: 'pkcs8', format: 'der' } as const;
  if (spec.type === 'ec') {
    return generateKeyPairSync('ec', {
      namedCurve: spec.namedCurve,
      publicKeyEncoding: spki,
      privateKeyEncoding: pkcs8,
    });
  }
  if (spec.type === 'rsa') {
    return generateKeyPairSync('rsa', {
      modulusLength: spec.modulusLength,
      ...(spec.publicExponent !== undefined ? { publicExponent: spec.publicExponent } : {}),
      publicKeyEncoding: spki,
      privateKeyEncoding: pkcs8,
    });
  }
  return generateKeyPairSync(spec.type as 'ed25519', { publicKeyEncoding: spki, privateKeyEncoding: pkcs8 });
}

/** `generateKeyPairSync` with the same arguments, minus the hang described above. */
export function keyPairSync(type: 'ec', options: { namedCurve: string }): KeyObjectPair;
export function keyPairSync(
  type: 'rsa',
  options: { modulusLength: number; publicExponent?: number },
): KeyObjectPair;
export function keyPairSync(type: 'ed25519' | 'ed448' | 'x25519'): KeyObjectPair;
export function keyPairSync(
  type: KeyPairSpec['type'],
  options?: { namedCurve: string } | { modulusLength: number; publicExponent?: number },
): KeyObjectPair {
  const der = derKeyPairSync({ type, ...options } as KeyPairSpec);
  return {
    privateKey: createPrivateKey({ key: der.privateKey, format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: der.publicKey, format: 'der', type: 'spki' }),
  };
}
