import 'reflect-metadata';
import {
  type Extension,
  Pkcs10CertificateRequestGenerator,
  SubjectAlternativeNameExtension,
} from '@peculiar/x509';
import type { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { type CryptoKeyPair, provider, signingAlgorithm } from './keys.js';

/** Options of {@link createCsr}. */
export interface CreateCsrOptions {
  /** The key pair to certify; the request is signed with its private key. */
  keys: CryptoKeyPair;
  /** Requested URI SAN (SPIRE's MintX509SVID ignores it and uses its own ID argument). */
  id?: SpiffeId;
  dnsNames?: string[];
}

/**
 * Creates a DER PKCS#10 certificate signing request for `keys`, subject `O=SPIFFE`, with the
 * requested names as a SAN extension request.
 *
 * @example
 * const keys = await generateKeyPair();
 * const csrDer = await createCsr({ keys, id: SpiffeId.parse('spiffe://example.org/broker') });
 */
export async function createCsr(opts: CreateCsrOptions): Promise<Uint8Array> {
  const names = [
    ...(opts.id ? [{ type: 'url' as const, value: opts.id.toString() }] : []),
    ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  const extensions: Extension[] = names.length > 0 ? [new SubjectAlternativeNameExtension(names, false)] : [];
  const csr = await Pkcs10CertificateRequestGenerator.create(
    {
      name: 'O=SPIFFE',
      keys: opts.keys,
      signingAlgorithm: signingAlgorithm(opts.keys.privateKey),
      extensions,
    },
    provider,
  );
  return new Uint8Array(csr.rawData);
}
