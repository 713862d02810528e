import 'reflect-metadata';
import { randomBytes, X509Certificate } from 'node:crypto';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  type Extension,
  type JsonGeneralNames,
  KeyUsageFlags,
  KeyUsagesExtension,
  type Name,
  X509Certificate as PeculiarCertificate,
  Pkcs10CertificateRequest,
  type PublicKey,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509CertificateGenerator,
} from '@peculiar/x509';
import type { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { VerifyError } from '../../errors.js';
import {
  type CryptoKey,
  type CryptoKeyPair,
  generateKeyPair,
  isRsaKey,
  type KeyAlgorithm,
  provider,
  signingAlgorithm,
  subtle,
} from './keys.js';
import { toPem } from './pem.js';

/** A certificate produced by these helpers, in every form callers tend to need. */
export interface IssuedCert {
  /** DER bytes. */
  der: Uint8Array;
  /** The same certificate as one `CERTIFICATE` PEM block. */
  pem: string;
  /** Parsed by node:crypto. */
  certificate: X509Certificate;
  /** PKCS#8 PEM of the private key, when these helpers generated it. */
  privateKeyPem?: string;
  /** The key pair, when these helpers generated it; a CA needs it to issue certificates. */
  keys?: CryptoKeyPair;
}

/** Options of {@link createCa}. */
export interface CreateCaOptions {
  trustDomain: TrustDomain;
  notBefore: Date;
  notAfter: Date;
  /** Defaults to `'ec-p256'`. */
  keyAlg?: KeyAlgorithm;
  /** The issuing CA, for an intermediate; a self-signed root when absent. */
  issuer?: IssuedCert;
  /** Distinguished name; defaults to `O=SPIFFE, CN=<td> CA <random hex>` so every CA's is unique. */
  subject?: string;
  /** basicConstraints pathLenConstraint; unlimited when absent. */
  pathLength?: number;
}

/** Options of {@link createX509Svid}. The last five exist to build invalid SVIDs for tests. */
export interface CreateX509SvidOptions {
  id: SpiffeId;
  issuer: IssuedCert;
  notBefore: Date;
  notAfter: Date;
  /** Defaults to `'ec-p256'`. */
  keyAlg?: KeyAlgorithm;
  dnsNames?: string[];
  /** URI SANs added after the SPIFFE ID. */
  extraUris?: string[];
  /** Leave the SPIFFE ID out of the URI SANs. */
  omitUri?: boolean;
  /** Mark the leaf as a CA (basicConstraints CA=true). */
  isCa?: boolean;
  /** `'default'`: digitalSignature (+keyEncipherment for RSA); `'certSign'` adds keyCertSign; `'none'` omits the extension. */
  keyUsage?: 'default' | 'certSign' | 'none';
  /** Include id-kp-serverAuth in the EKU; default true (clientAuth is always present). */
  serverAuth?: boolean;
}

/** Options of {@link signCsr}. */
export interface SignCsrOptions {
  /** DER PKCS#10 request; its self-signature is verified. */
  csrDer: Uint8Array;
  issuer: IssuedCert;
  /** The SPIFFE ID to certify; whatever names the CSR requests are ignored. */
  id: SpiffeId;
  notBefore: Date;
  notAfter: Date;
  dnsNames?: string[];
}

/**
 * A random positive 128-bit serial (RFC 5280 §4.1.2.2: positive, at most 20 octets), hex encoded.
 * The first octet is kept in 0x01..0x7f so the DER INTEGER is minimal and positive as-is.
 */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

function issued(der: ArrayBuffer, privateKeyPem?: string, keys?: CryptoKeyPair): IssuedCert {
  const bytes = new Uint8Array(der);
  const out: IssuedCert = { der: bytes, pem: toPem(bytes), certificate: new X509Certificate(bytes) };
  if (privateKeyPem !== undefined) out.privateKeyPem = privateKeyPem;
  if (keys !== undefined) out.keys = keys;
  return out;
}

async function exportPrivateKeyPem(keys: CryptoKeyPair): Promise<string> {
  return toPem(new Uint8Array(await subtle.exportKey('pkcs8', keys.privateKey)), 'PRIVATE KEY');
}

function signingKeyOf(issuer: IssuedCert, what: string): CryptoKey {
  const key = issuer.keys?.privateKey;
  if (!key) throw new TypeError(`${what}: the issuer has no private key (IssuedCert.keys)`);
  if (!issuer.certificate.ca) throw new TypeError(`${what}: the issuer is not a CA certificate`);
  return key;
}

function checkValidity(notBefore: Date, notAfter: Date, what: string): void {
  if (!(notBefore instanceof Date) || Number.isNaN(notBefore.getTime())) {
    throw new TypeError(`${what}: notBefore must be a valid Date`);
  }
  if (!(notAfter instanceof Date) || Number.isNaN(notAfter.getTime())) {
    throw new TypeError(`${what}: notAfter must be a valid Date`);
  }
  if (notAfter.getTime() < notBefore.getTime()) throw new TypeError(`${what}: notAfter is before notBefore`);
}

/** The issuer's subject name exactly as encoded (RFC 5280 §4.1.2.4: issuer = issuer's subject). */
function issuerName(issuer: IssuedCert): Name {
  return new PeculiarCertificate(Uint8Array.from(issuer.der)).subjectName;
}

/**
 * Creates a CA certificate for `trustDomain`: a self-signed root, or an intermediate when `issuer`
 * is given. basicConstraints CA=true (critical), keyUsage keyCertSign|cRLSign|digitalSignature
 * (critical), URI SAN `spiffe://<td>` (X509-SVID §3.2: a signing certificate's ID has no path),
 * SKI, and AKI for intermediates. The key pair is returned so the CA can issue.
 *
 * @example
 * const root = await createCa({ trustDomain: TrustDomain.parse('example.org'), notBefore, notAfter });
 * const inter = await createCa({ trustDomain: root_td, notBefore, notAfter, issuer: root });
 */
export async function createCa(opts: CreateCaOptions): Promise<IssuedCert> {
  checkValidity(opts.notBefore, opts.notAfter, 'createCa');
  const keys = await generateKeyPair(opts.keyAlg);
  const serialNumber = randomSerial();
  const subject = opts.subject ?? `O=SPIFFE, CN=${opts.trustDomain.name} CA ${serialNumber.slice(0, 8)}`;
  const extensions: Extension[] = [
    // X509-SVID §4.1: signing certificates set cA=true.
    new BasicConstraintsExtension(true, opts.pathLength, true),
    // X509-SVID §4.3: keyUsage critical; signing certificates set keyCertSign, MAY set cRLSign.
    new KeyUsagesExtension(
      KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature,
      true,
    ),
    new SubjectAlternativeNameExtension([{ type: 'url', value: opts.trustDomain.idString() }], false),
    await SubjectKeyIdentifierExtension.create(keys.publicKey, false, provider),
  ];
  let certDer: ArrayBuffer;
  if (opts.issuer) {
    const signingKey = signingKeyOf(opts.issuer, 'createCa');
    extensions.push(
      await AuthorityKeyIdentifierExtension.create(opts.issuer.keys!.publicKey, false, provider),
    );
    const cert = await X509CertificateGenerator.create(
      {
        serialNumber,
        subject,
        issuer: issuerName(opts.issuer),
        notBefore: opts.notBefore,
        notAfter: opts.notAfter,
        publicKey: keys.publicKey,
        signingKey,
        signingAlgorithm: signingAlgorithm(signingKey),
        extensions,
      },
      provider,
    );
    certDer = cert.rawData;
  } else {
    const cert = await X509CertificateGenerator.createSelfSigned(
      {
        serialNumber,
        name: subject,
        notBefore: opts.notBefore,
        notAfter: opts.notAfter,
        keys,
        signingAlgorithm: signingAlgorithm(keys.privateKey),
        extensions,
      },
      provider,
    );
    certDer = cert.rawData;
  }
  return issued(certDer, await exportPrivateKeyPem(keys), keys);
}

interface LeafParams {
  publicKey: CryptoKey | PublicKey;
  rsa: boolean;
  issuer: IssuedCert;
  notBefore: Date;
  notAfter: Date;
  uris: string[];
  dnsNames: string[];
  isCa: boolean;
  keyUsage: 'default' | 'certSign' | 'none';
  serverAuth: boolean;
  what: string;
}

async function issueLeaf(p: LeafParams): Promise<ArrayBuffer> {
  checkValidity(p.notBefore, p.notAfter, p.what);
  const signingKey = signingKeyOf(p.issuer, p.what);
  // X509-SVID §4.1: leaf certificates set cA=false.
  const extensions: Extension[] = [new BasicConstraintsExtension(p.isCa, undefined, true)];
  if (p.keyUsage !== 'none') {
    // X509-SVID §4.3: leaves set digitalSignature, MAY set keyEncipherment (RSA), never keyCertSign.
    let usage = KeyUsageFlags.digitalSignature;
    if (p.rsa) usage |= KeyUsageFlags.keyEncipherment;
    if (p.keyUsage === 'certSign') usage |= KeyUsageFlags.keyCertSign;
    extensions.push(new KeyUsagesExtension(usage, true));
  }
  // X509-SVID §4.4: leaves SHOULD carry EKU with serverAuth and clientAuth.
  extensions.push(
    new ExtendedKeyUsageExtension(
      p.serverAuth
        ? [ExtendedKeyUsage.serverAuth, ExtendedKeyUsage.clientAuth]
        : [ExtendedKeyUsage.clientAuth],
      false,
    ),
  );
  const names: JsonGeneralNames = [
    ...p.uris.map((value) => ({ type: 'url' as const, value })),
    ...p.dnsNames.map((value) => ({ type: 'dns' as const, value })),
  ];
  if (names.length > 0) extensions.push(new SubjectAlternativeNameExtension(names, false));
  extensions.push(
    await SubjectKeyIdentifierExtension.create(p.publicKey, false, provider),
    await AuthorityKeyIdentifierExtension.create(p.issuer.keys!.publicKey, false, provider),
  );
  const cert = await X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: 'O=SPIFFE',
      issuer: issuerName(p.issuer),
      notBefore: p.notBefore,
      notAfter: p.notAfter,
      publicKey: p.publicKey,
      signingKey,
      signingAlgorithm: signingAlgorithm(signingKey),
      extensions,
    },
    provider,
  );
  return cert.rawData;
}

/**
 * Issues a leaf X509-SVID for `id` with a fresh key pair: basicConstraints CA=false (critical),
 * keyUsage digitalSignature (+keyEncipherment for RSA, critical), EKU serverAuth+clientAuth,
 * URI SAN = the SPIFFE ID (X509-SVID §2), SKI/AKI. The negative-test options break one rule each.
 *
 * @example
 * const svid = await createX509Svid({ id: SpiffeId.parse('spiffe://example.org/web'), issuer: ca, notBefore, notAfter });
 */
export async function createX509Svid(opts: CreateX509SvidOptions): Promise<IssuedCert> {
  const keys = await generateKeyPair(opts.keyAlg);
  const uris = [...(opts.omitUri ? [] : [opts.id.toString()]), ...(opts.extraUris ?? [])];
  const der = await issueLeaf({
    publicKey: keys.publicKey,
    rsa: isRsaKey(keys.publicKey),
    issuer: opts.issuer,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    uris,
    dnsNames: opts.dnsNames ?? [],
    isCa: opts.isCa ?? false,
    keyUsage: opts.keyUsage ?? 'default',
    serverAuth: opts.serverAuth ?? true,
    what: 'createX509Svid',
  });
  return issued(der, await exportPrivateKeyPem(keys), keys);
}

/**
 * Issues a leaf X509-SVID for the public key of a PKCS#10 request (as SPIRE's MintX509SVID does).
 * The request's self-signature must verify; the names it asks for are ignored in favour of `id`
 * and `dnsNames`. The result carries no private key.
 *
 * @throws VerifyError `ERR_VERIFY_CSR_INVALID` when the request does not parse or its signature
 *   does not verify.
 * @example
 * const svid = await signCsr({ csrDer, issuer: ca, id, notBefore, notAfter });
 */
export async function signCsr(opts: SignCsrOptions): Promise<IssuedCert> {
  let csr: Pkcs10CertificateRequest;
  try {
    csr = new Pkcs10CertificateRequest(Uint8Array.from(opts.csrDer));
  } catch (cause) {
    throw new VerifyError('ERR_VERIFY_CSR_INVALID', 'certificate signing request is not valid DER PKCS#10', {
      cause,
    });
  }
  let ok: boolean;
  try {
    ok = await csr.verify(provider);
  } catch (cause) {
    throw new VerifyError(
      'ERR_VERIFY_CSR_INVALID',
      `certificate signing request signature could not be checked: ${String(cause)}`,
      { cause },
    );
  }
  if (!ok) {
    throw new VerifyError('ERR_VERIFY_CSR_INVALID', 'certificate signing request signature does not verify');
  }
  const publicKey = csr.publicKey;
  const der = await issueLeaf({
    publicKey,
    rsa: (publicKey.algorithm as { name: string }).name.startsWith('RSA'),
    issuer: opts.issuer,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    uris: [opts.id.toString()],
    dnsNames: opts.dnsNames ?? [],
    isCa: false,
    keyUsage: 'default',
    serverAuth: true,
    what: 'signCsr',
  });
  return issued(der);
}
