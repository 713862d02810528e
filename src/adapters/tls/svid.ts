import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { MtlsError } from '../../errors.js';
import { pemCertificateBlocks } from '../pki/pem.js';

/** An X509-SVID with its private key, as PEM (what SPIRE's MintX509SVID or the Workload API give). */
export interface X509SvidMaterial {
  /** The leaf X509-SVID first, then any intermediates. */
  readonly certChainPem: string;
  /** The leaf's private key (PKCS#8, SEC1 or PKCS#1 PEM). */
  readonly privateKeyPem: string;
}

/** Where the local SVID comes from: the current material, and news of its rotation. */
export interface SvidSource {
  current(): X509SvidMaterial;
  /** Calls `listener` after every rotation; returns the unsubscribe function. */
  subscribe(listener: (svid: X509SvidMaterial) => void): () => void;
}

/** A checked SVID: its material, its SPIFFE ID and its leaf's expiry. */
interface CheckedSvid {
  readonly material: X509SvidMaterial;
  readonly id: SpiffeId;
  readonly notAfter: number;
}

function check(material: X509SvidMaterial): CheckedSvid {
  if (typeof material?.certChainPem !== 'string' || typeof material.privateKeyPem !== 'string') {
    throw new TypeError('X509 SVID material needs certChainPem and privateKeyPem strings');
  }
  const blocks = pemCertificateBlocks(material.certChainPem);
  if (blocks.length === 0)
    throw new MtlsError('ERR_MTLS_SVID', 'SVID certificate chain: no PEM CERTIFICATE block');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]!);
  } catch (cause) {
    throw new MtlsError(
      'ERR_MTLS_SVID',
      'SVID certificate chain: the first block is not a valid certificate',
      {
        cause,
      },
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(material.privateKeyPem);
  } catch (cause) {
    throw new MtlsError('ERR_MTLS_SVID', 'SVID private key: not a valid PEM private key', { cause });
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new MtlsError('ERR_MTLS_SVID', 'SVID private key does not belong to the leaf certificate');
  }
  const uris = (leaf.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  const id = uris.length === 1 ? SpiffeId.tryParse(uris[0]!) : undefined;
  if (!id) {
    throw new MtlsError(
      'ERR_MTLS_SVID',
      `SVID leaf certificate must carry exactly one SPIFFE ID URI SAN, found ${uris.length} URI SANs`,
    );
  }
  return { material, id, notAfter: Date.parse(leaf.validTo) };
}

/**
 * Holds the local X509-SVID and lets it rotate: {@link SvidHolder.update} checks the new material
 * (one SPIFFE ID, a key that fits the leaf) before anyone sees it, then tells subscribers — a server
 * secured by `SpiffeTls.secure` swaps its secure context, and new client connections use it at once.
 *
 * @example
 * const svid = new SvidHolder({ certChainPem, privateKeyPem });
 * rotateEvery(30 * 60_000, async () => svid.update(await mint()));
 */
export class SvidHolder implements SvidSource {
  #svid: CheckedSvid;
  readonly #listeners = new Set<(svid: X509SvidMaterial) => void>();

  /** @throws MtlsError `ERR_MTLS_SVID` when the material is unusable. */
  constructor(initial: X509SvidMaterial) {
    this.#svid = check(initial);
  }

  /** The current material. */
  current(): X509SvidMaterial {
    return this.#svid.material;
  }

  /** The current SVID's SPIFFE ID. */
  get id(): SpiffeId {
    return this.#svid.id;
  }

  /** The current leaf's notAfter, ms since the epoch. */
  get notAfter(): number {
    return this.#svid.notAfter;
  }

  /**
   * Replaces the SVID (rotation). The old one stays in force when the new one is refused.
   * @throws MtlsError `ERR_MTLS_SVID`
   */
  update(material: X509SvidMaterial): void {
    this.#svid = check(material);
    for (const l of this.#listeners) l(material);
  }

  subscribe(listener: (svid: X509SvidMaterial) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** `svid` as an {@link SvidSource}: a source as is, fixed material in a (checked) {@link SvidHolder}. */
export function toSvidSource(svid: SvidSource | X509SvidMaterial): SvidSource {
  const maybe = svid as Partial<SvidSource>;
  if (typeof maybe.current === 'function' && typeof maybe.subscribe === 'function') return svid as SvidSource;
  return new SvidHolder(svid as X509SvidMaterial);
}
