import type { KeyObject } from 'node:crypto';
import { VerifyError } from '../../errors.js';
import type { X509Authority } from '../bundle/trust-bundle.js';
import { type CertificateFields, parseCertificateDer } from './der.js';

/** What path validation needs from a bundle's X.509 authority, derived once per authority object. */
export type AnchorInfo =
  | { readonly ok: true; readonly fields: CertificateFields; readonly publicKey: KeyObject }
  | { readonly ok: false; readonly reason: string };

/** Derives {@link AnchorInfo}; an authority our DER reader refuses is unusable, with the reason kept. */
export function computeAnchorInfo(authority: X509Authority): AnchorInfo {
  let fields: CertificateFields;
  try {
    fields = parseCertificateDer(authority.der);
  } catch (err) {
    if (err instanceof VerifyError) return { ok: false, reason: err.message };
    throw err;
  }
  try {
    return { ok: true, fields, publicKey: authority.certificate.publicKey };
  } catch (err) {
    // OpenSSL decodes the key lazily: a certificate can parse while its key does not (found by
    // scripts/fuzz.ts; test/fuzz/regressions.test.ts).
    return { ok: false, reason: `its public key cannot be decoded (${(err as Error).message})` };
  }
}
