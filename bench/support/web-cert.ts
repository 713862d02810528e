/**
 * A private CA and an https_web server certificate for 127.0.0.1 (IP SAN), for benchmarks whose
 * peers are served over https_web with the allowlist entry's `caFile`.
 * @module
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import {
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  X509Certificate as PeculiarCertificate,
  SubjectAlternativeNameExtension,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { createCa, generateKeyPair, toPem } from '../../src/adapters/pki/index.js';
import { provider, subtle } from '../../src/adapters/pki/keys.js';
import { TrustDomain } from '../../src/core/spiffeid/trust-domain.js';

/** PEM material of a web server: its CA (for clients) and its certificate and key. */
export interface WebServerCert {
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** Creates a CA and a server certificate valid for `ips` (default 127.0.0.1) and `dnsNames`. */
export async function createWebServerCert(
  opts: { ips?: readonly string[]; dnsNames?: readonly string[] } = {},
): Promise<WebServerCert> {
  const notBefore = new Date(Date.now() - 3600_000);
  const notAfter = new Date(Date.now() + 7 * 86_400_000);
  const ca = await createCa({ trustDomain: TrustDomain.parse('bench-web-ca.test'), notBefore, notAfter });
  const keys = await generateKeyPair('ec-p256');
  const cert = await X509CertificateGenerator.create(
    {
      serialNumber: `01${randomBytes(15).toString('hex')}`,
      subject: 'CN=bench fleet server',
      issuer: new PeculiarCertificate(Uint8Array.from(ca.der)).subjectName,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: ca.keys!.privateKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new BasicConstraintsExtension(false, undefined, true),
        new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
        new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth], false),
        new SubjectAlternativeNameExtension(
          [
            ...(opts.ips ?? ['127.0.0.1']).map((value) => ({ type: 'ip' as const, value })),
            ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
          ],
          false,
        ),
      ],
    },
    provider,
  );
  const pkcs8 = new Uint8Array(await subtle.exportKey('pkcs8', keys.privateKey));
  return {
    caPem: ca.pem,
    certPem: toPem(new Uint8Array(cert.rawData)),
    keyPem: toPem(pkcs8, 'PRIVATE KEY'),
  };
}
