import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { SpireError } from '../../errors.js';
import { pemCertificateBlocks } from '../pki/pem.js';

/**
 * mTLS material for the SPIRE server API over TCP: an admin X509-SVID (its ID must be listed in
 * the server's `admin_ids`) and the trust bundle that verifies the server's own X509-SVID.
 */
export interface SpireTlsOptions {
  /** PEM: the admin X509-SVID leaf first, then any intermediates. */
  readonly certChainPem: string;
  /** PEM (PKCS#8, SEC1 or PKCS#1) private key of the leaf. */
  readonly privateKeyPem: string;
  /** PEM: the X.509 authorities of the server's trust domain. */
  readonly trustBundlePem: string;
  /** The server's trust domain; the server must present `spiffe://<td>/spire/server`. */
  readonly serverTrustDomain: string | TrustDomain;
  /** Overrides the expected server ID (default `spiffe://<serverTrustDomain>/spire/server`). */
  readonly serverId?: string;
}

/** Checked TLS material, ready for grpc credentials. */
export interface CheckedTls {
  readonly certChain: Buffer;
  readonly privateKey: Buffer;
  readonly rootCerts: Buffer;
  readonly serverId: SpiffeId;
  readonly serverTrustDomain: TrustDomain;
}

function certificates(pem: string, what: string): X509Certificate[] {
  const blocks = pemCertificateBlocks(pem);
  if (blocks.length === 0) {
    throw new SpireError('ERR_SPIRE_CREDENTIALS', `${what}: no PEM CERTIFICATE block found`);
  }
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (cause) {
      throw new SpireError('ERR_SPIRE_CREDENTIALS', `${what}: certificate ${i} does not parse`, { cause });
    }
  });
}

/**
 * Validates mTLS material up front so a typo fails at construction, not as an opaque
 * UNAVAILABLE later: certificates parse, the key parses and matches the leaf, the leaf carries
 * exactly one SPIFFE ID, the bundle holds at least one CA certificate.
 *
 * @throws SpireError `ERR_SPIRE_CREDENTIALS`
 */
export function checkTlsOptions(tls: SpireTlsOptions): CheckedTls {
  const chain = certificates(tls.certChainPem, 'admin X509-SVID');
  const leaf = chain[0]!;
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(tls.privateKeyPem);
  } catch (cause) {
    throw new SpireError('ERR_SPIRE_CREDENTIALS', 'admin X509-SVID private key does not parse', { cause });
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new SpireError(
      'ERR_SPIRE_CREDENTIALS',
      'admin X509-SVID private key does not match the leaf certificate',
    );
  }
  if (leaf.ca) {
    throw new SpireError(
      'ERR_SPIRE_CREDENTIALS',
      'admin X509-SVID leaf is a CA certificate (X509-SVID §4.1)',
    );
  }
  const ids = uriSans(leaf.subjectAltName);
  if (ids.length !== 1 || SpiffeId.tryParse(ids[0]!) === undefined) {
    throw new SpireError(
      'ERR_SPIRE_CREDENTIALS',
      `admin X509-SVID must carry exactly one SPIFFE ID URI SAN (X509-SVID §2), found ${JSON.stringify(ids)}`,
    );
  }
  const roots = certificates(tls.trustBundlePem, 'trust bundle');
  if (!roots.some((c) => c.ca)) {
    throw new SpireError('ERR_SPIRE_CREDENTIALS', 'trust bundle holds no CA certificate');
  }
  let serverTrustDomain: TrustDomain;
  let serverId: SpiffeId;
  try {
    serverTrustDomain =
      typeof tls.serverTrustDomain === 'string'
        ? TrustDomain.parse(tls.serverTrustDomain)
        : tls.serverTrustDomain;
    serverId = SpiffeId.parse(tls.serverId ?? `${serverTrustDomain.idString()}/spire/server`);
  } catch (cause) {
    throw new SpireError('ERR_SPIRE_CREDENTIALS', 'the expected SPIRE server ID is not valid', { cause });
  }
  return {
    certChain: Buffer.from(tls.certChainPem),
    privateKey: Buffer.from(tls.privateKeyPem),
    rootCerts: Buffer.from(roots.map((c) => c.toString()).join('')),
    serverId,
    serverTrustDomain,
  };
}

function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

/**
 * The server-identity check used in place of hostname verification: node has already built a
 * chain to the trust bundle; this requires the leaf to be an X509-SVID (not a CA, X509-SVID §4.1;
 * exactly one URI SAN, §2) whose SPIFFE ID is `expected`. Returns an Error to abort the handshake.
 */
export function checkServerSvid(cert: PeerCertificate, expected: SpiffeId): Error | undefined {
  if (cert.ca) return new Error(`SPIRE server certificate is a CA certificate, not an X509-SVID`);
  const ids = uriSans(cert.subjectaltname);
  if (ids.length !== 1) {
    return new Error(`SPIRE server certificate must carry exactly one URI SAN, found ${JSON.stringify(ids)}`);
  }
  if (ids[0] !== expected.toString()) {
    return new Error(`SPIRE server presented ${ids[0]}, expected ${expected.toString()}`);
  }
  return undefined;
}
