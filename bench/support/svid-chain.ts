import { X509Certificate } from 'node:crypto';
import { createCa, createX509Svid, type IssuedCert } from '../../src/adapters/pki/index.js';
import { SpiffeId, TrustDomain } from '../../src/core/spiffeid/index.js';

const HOUR = 3_600_000;

/** The chain every verification benchmark uses: EC P-256 leaf → intermediate → root of bench.test, valid around now. */
export async function benchSvidChain(): Promise<{
  trustDomain: TrustDomain;
  root: IssuedCert;
  intermediate: IssuedCert;
  leaf: IssuedCert;
  /** The raw node:crypto baseline: parse the three DERs and verify the two signatures. */
  rawVerify: () => void;
}> {
  const now = Date.now();
  const trustDomain = TrustDomain.parse('bench.test');
  const notBefore = new Date(now - HOUR);
  const notAfter = new Date(now + 24 * HOUR);
  const root = await createCa({ trustDomain, notBefore, notAfter });
  const intermediate = await createCa({ trustDomain, notBefore, notAfter, issuer: root });
  const leaf = await createX509Svid({
    id: SpiffeId.parse('spiffe://bench.test/svc'),
    issuer: intermediate,
    notBefore,
    notAfter,
  });
  const rawVerify = (): void => {
    const l = new X509Certificate(leaf.der);
    const i = new X509Certificate(intermediate.der);
    const r = new X509Certificate(root.der);
    if (!l.verify(i.publicKey) || !i.verify(r.publicKey)) throw new Error('baseline chain does not verify');
  };
  return { trustDomain, root, intermediate, leaf, rawVerify };
}
