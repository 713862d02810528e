import { webcrypto } from 'node:crypto';
import { derKeyPairSync } from '../../platform/keygen.js';

/** WebCrypto key pair (node:crypto's `webcrypto` types; the project compiles without the DOM lib). */
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
/** WebCrypto key. */
export type CryptoKey = webcrypto.CryptoKey;
type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;

/** Key algorithms the PKI helpers can generate and sign with. */
export type KeyAlgorithm = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'ed25519';

/** The WebCrypto implementation every helper uses (node:crypto's, never a global). */
export const subtle: webcrypto.SubtleCrypto = webcrypto.subtle;

/**
 * The WebCrypto object handed to @peculiar/x509 explicitly (its parameter type is the DOM `Crypto`,
 * which node's `webcrypto` implements; the cast bridges the two type declarations).
 */
// biome-ignore lint/suspicious/noExplicitAny: bridges node's webcrypto type to the DOM Crypto type @peculiar/x509 declares.
export const provider: any = webcrypto;

/** RSA public exponent 65537, big-endian. */
const F4 = new Uint8Array([1, 0, 1]);

function generationParams(
  alg: KeyAlgorithm,
): webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams | Algorithm {
  switch (alg) {
    case 'ec-p256':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ec-p384':
      return { name: 'ECDSA', namedCurve: 'P-384' };
    case 'rsa-2048':
      return { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: F4, hash: 'SHA-256' };
    case 'ed25519':
      return { name: 'Ed25519' };
    default:
      throw new TypeError(`unsupported key algorithm ${JSON.stringify(alg)}`);
  }
}

/**
 * Generates an extractable signing key pair (so {@link privateKeyToPem} can export it).
 *
 * @param alg defaults to `'ec-p256'` (SPIRE's default CA and SVID key type).
 * @example
 * const keys = await generateKeyPair('ec-p384');
 */
export async function generateKeyPair(alg: KeyAlgorithm = 'ec-p256'): Promise<CryptoKeyPair> {
  // Generated as DER by node:crypto and imported, never by `subtle.generateKey`: on Node 20 a
  // generation job collected by a GC inside a JWK export of its key hangs the process (see
  // platform/keygen.ts).
  const der = derKeyPairSync(
    alg === 'rsa-2048'
      ? { type: 'rsa', modulusLength: 2048, publicExponent: 0x10001 }
      : alg === 'ed25519'
        ? { type: 'ed25519' }
        : { type: 'ec', namedCurve: alg === 'ec-p384' ? 'P-384' : 'P-256' },
  );
  const params = generationParams(alg) as webcrypto.EcKeyImportParams;
  return {
    privateKey: await subtle.importKey('pkcs8', der.privateKey, params, true, ['sign']),
    publicKey: await subtle.importKey('spki', der.publicKey, params, true, ['verify']),
  };
}

/**
 * The signature algorithm a private key signs certificates with: ECDSA with the hash matching
 * the curve (SHA-256 for P-256, SHA-384 for P-384), RSASSA-PKCS1-v1_5 with the key's hash, Ed25519.
 */
export function signingAlgorithm(key: CryptoKey): Algorithm | EcdsaParams {
  const a = key.algorithm as Algorithm & { namedCurve?: string };
  switch (a.name) {
    case 'ECDSA':
      return { name: 'ECDSA', hash: a.namedCurve === 'P-384' ? 'SHA-384' : 'SHA-256' } as EcdsaParams;
    case 'RSASSA-PKCS1-v1_5':
      return { name: 'RSASSA-PKCS1-v1_5' };
    case 'Ed25519':
      return { name: 'Ed25519' };
    default:
      throw new TypeError(`cannot sign with a ${a.name} key`);
  }
}

/** True for RSA keys, whose leaf certificates also get `keyEncipherment`. */
export function isRsaKey(key: CryptoKey): boolean {
  return key.algorithm.name.startsWith('RSA');
}
