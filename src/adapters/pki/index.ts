/**
 * Certificate helpers: key pairs, CA and X509-SVID issuance, PKCS#10 requests, PEM. Used by tests,
 * the SPIRE emulator (signing CSRs), the lab, and the broker (its own key and CSR). The only
 * importer of @peculiar/x509 besides the emulator. Every validity period is passed in: nothing
 * here reads the clock.
 * @module
 */
export type { CreateCaOptions, CreateX509SvidOptions, IssuedCert, SignCsrOptions } from './certificates.js';
export { createCa, createX509Svid, signCsr } from './certificates.js';
export type { CreateCsrOptions } from './csr.js';
export { createCsr } from './csr.js';
export type { KeyAlgorithm } from './keys.js';
export { generateKeyPair } from './keys.js';
export type { PemScan, PemScanOptions, RawPemBlock } from './pem.js';
export { pemCertificateBlocks, pemToDerList, scanPem, toPem } from './pem.js';
