import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { RuntimeError } from '../../errors.js';
import { keyPairSync } from '../../platform/keygen.js';
import type { AuditFs } from './fs.js';
import { requireEd25519 } from './record.js';

/** The audit signing key pair. */
export interface AuditKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** True when this call generated the key file. */
  readonly created: boolean;
}

/** Permissions of a generated key file: owner read/write only. */
export const AUDIT_KEY_MODE = 0o600;

/**
 * Loads the Ed25519 signing key from a PKCS#8 PEM file, generating it (mode 0600, never
 * overwriting an existing file) when absent.
 * @throws RuntimeError `ERR_AUDIT_KEY` when the file is unreadable or not an Ed25519 private key.
 */
export async function loadOrCreateAuditKey(path: string, fs: AuditFs): Promise<AuditKey> {
  const existing = await readKey(path, fs);
  if (existing) return { ...existing, created: false };
  const { privateKey } = keyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  try {
    await fs.createExclusive(path, pem, AUDIT_KEY_MODE);
  } catch (cause) {
    // Another process created it first: use theirs.
    const raced = await readKey(path, fs);
    if (raced) return { ...raced, created: false };
    throw new RuntimeError('ERR_AUDIT_KEY', `cannot create audit key ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  return { privateKey, publicKey: createPublicKey(privateKey), created: true };
}

async function readKey(path: string, fs: AuditFs): Promise<Omit<AuditKey, 'created'> | undefined> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await fs.readFile(path);
  } catch (cause) {
    throw new RuntimeError('ERR_AUDIT_KEY', `cannot read audit key ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (!bytes) return undefined;
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(Buffer.from(bytes));
  } catch (cause) {
    throw new RuntimeError('ERR_AUDIT_KEY', `audit key ${path} is not a PEM private key`, { cause });
  }
  requireEd25519(privateKey, 'private', `audit key ${path}`);
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/**
 * Reads a public key for verification from PEM (an SPKI public key, or a private key whose public
 * half is taken).
 * @throws RuntimeError `ERR_AUDIT_KEY`
 */
export function parseAuditPublicKey(pem: string | Uint8Array, what = 'public key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(typeof pem === 'string' ? pem : Buffer.from(pem));
  } catch (cause) {
    throw new RuntimeError('ERR_AUDIT_KEY', `${what} is not a PEM public or private key`, { cause });
  }
  return requireEd25519(key, 'public', what);
}
