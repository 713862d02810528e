/**
 * The emulator's own signing authorities: X.509 CAs and JWT keys with SPIRE's local-authority life
 * cycle (prepared → active → old; taint; revoke), and MintX509SVID's CSR checks and signing.
 * @module
 */
import 'reflect-metadata';
import { randomInt, webcrypto } from 'node:crypto';
import {
  X509Certificate as PeculiarCertificate,
  Pkcs10CertificateRequest,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
} from '@peculiar/x509';
import { SpiffeId } from '../../../core/spiffeid/spiffe-id.js';
import type { TrustDomain } from '../../../core/spiffeid/trust-domain.js';
import { keyPairSync } from '../../../platform/keygen.js';
import { createCa, createX509Svid, type IssuedCert, type KeyAlgorithm, signCsr } from '../../pki/index.js';
import type { StoredJwtKey, StoredX509 } from './datastore.js';
import { goSpiffeIdFromString } from './go-spiffe.js';

/** Where an authority is in its life cycle (SPIRE `localauthority show`). */
export type AuthorityState = 'prepared' | 'active' | 'old';

/** A public view of one authority. */
export interface AuthorityInfo {
  /** X.509: the CA's subject key ID in lower-case hex; JWT: the key ID. */
  readonly authorityId: string;
  readonly state: AuthorityState;
  /** Unix seconds. */
  readonly expiresAt: number;
  readonly tainted: boolean;
}

interface X509Entry {
  id: string;
  ca: IssuedCert;
  state: AuthorityState;
  tainted: boolean;
}

interface JwtEntry {
  kid: string;
  spki: Uint8Array;
  privateKeyPem: string;
  notAfter: number;
  state: AuthorityState;
  tainted: boolean;
}

/** A MintX509SVID refusal: the gRPC status name and SPIRE's message. */
export interface MintRefusal {
  readonly code: 'INVALID_ARGUMENT' | 'INTERNAL';
  readonly message: string;
}

/** A minted X509-SVID. */
export interface MintedSvid {
  readonly certChain: Uint8Array[];
  readonly trustDomain: string;
  readonly path: string;
  /** Unix seconds. */
  readonly expiresAt: number;
}

/** SPIRE backdates notBefore by this much (credtemplate `NotBeforeCushion`). */
const NOT_BEFORE_CUSHION_MS = 10_000;

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A 32-character random key ID, the shape SPIRE gives its JWT keys. */
function randomKid(): string {
  let s = '';
  for (let i = 0; i < 32; i++) s += BASE62[randomInt(BASE62.length)];
  return s;
}

function subjectKeyId(der: Uint8Array): string {
  const ext = new PeculiarCertificate(Uint8Array.from(der)).getExtension(SubjectKeyIdentifierExtension);
  if (!ext) throw new TypeError('emulator CA certificate has no subject key identifier');
  return ext.keyId.toLowerCase();
}

/** Options of {@link EmulatorAuthorities.create}. */
export interface EmulatorAuthoritiesOptions {
  readonly trustDomain: TrustDomain;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** CA and JWT key lifetime in seconds. */
  readonly caTtlSeconds: number;
  /** Default MintX509SVID TTL in seconds. */
  readonly defaultX509SvidTtlSeconds: number;
  readonly keyAlg: KeyAlgorithm;
}

/** The signing authorities of one emulated SPIRE server. */
export class EmulatorAuthorities {
  readonly #opts: EmulatorAuthoritiesOptions;
  readonly #x509: X509Entry[] = [];
  readonly #jwt: JwtEntry[] = [];

  private constructor(opts: EmulatorAuthoritiesOptions) {
    this.#opts = opts;
  }

  /** Creates the authorities with one active X.509 CA and one active JWT key. */
  static async create(opts: EmulatorAuthoritiesOptions): Promise<EmulatorAuthorities> {
    const a = new EmulatorAuthorities(opts);
    const x = await a.#newX509('active');
    a.#x509.push(x);
    a.#jwt.push(a.#newJwt('active'));
    return a;
  }

  async #newX509(state: AuthorityState): Promise<X509Entry> {
    const now = this.#opts.now();
    const ca = await createCa({
      trustDomain: this.#opts.trustDomain,
      notBefore: new Date(now - NOT_BEFORE_CUSHION_MS),
      notAfter: new Date(now + this.#opts.caTtlSeconds * 1000),
      keyAlg: this.#opts.keyAlg,
    });
    return { id: subjectKeyId(ca.der), ca, state, tainted: false };
  }

  #newJwt(state: AuthorityState): JwtEntry {
    const { publicKey, privateKey } = keyPairSync('ec', { namedCurve: 'P-256' });
    return {
      kid: randomKid(),
      spki: new Uint8Array(publicKey.export({ type: 'spki', format: 'der' })),
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      notAfter: Math.floor(this.#opts.now() / 1000) + this.#opts.caTtlSeconds,
      state,
      tainted: false,
    };
  }

  /** The X.509 authorities as they belong in the server's own bundle. */
  bundleX509(): StoredX509[] {
    return this.#x509.map((x) => ({ der: x.ca.der, tainted: x.tainted }));
  }

  /** The JWT authorities as they belong in the server's own bundle. */
  bundleJwt(): StoredJwtKey[] {
    return this.#jwt.map((k) => ({
      spki: k.spki,
      kid: k.kid,
      notAfter: BigInt(k.notAfter),
      tainted: k.tainted,
    }));
  }

  /** The CA that signs X509-SVIDs now. */
  activeCa(): IssuedCert {
    const a = this.#x509.find((x) => x.state === 'active');
    if (!a) throw new TypeError('the emulator has no active X.509 authority');
    return a.ca;
  }

  /** The JWT key that would sign JWT-SVIDs now (kid and PKCS#8 PEM private key). */
  activeJwtKey(): { kid: string; privateKeyPem: string } {
    const k = this.#jwt.find((j) => j.state === 'active');
    if (!k) throw new TypeError('the emulator has no active JWT authority');
    return { kid: k.kid, privateKeyPem: k.privateKeyPem };
  }

  x509Authorities(): AuthorityInfo[] {
    return this.#x509.map((x) => ({
      authorityId: x.id,
      state: x.state,
      expiresAt: Math.floor(Date.parse(x.ca.certificate.validTo) / 1000),
      tainted: x.tainted,
    }));
  }

  jwtAuthorities(): AuthorityInfo[] {
    return this.#jwt.map((k) => ({
      authorityId: k.kid,
      state: k.state,
      expiresAt: k.notAfter,
      tainted: k.tainted,
    }));
  }

  /** Creates the next X.509 CA (prepared; a previously prepared one becomes old). */
  async prepareX509(): Promise<{ info: AuthorityInfo; der: Uint8Array }> {
    for (const x of this.#x509) if (x.state === 'prepared') x.state = 'old';
    const x = await this.#newX509('prepared');
    this.#x509.push(x);
    return { info: this.x509Authorities().at(-1)!, der: x.ca.der };
  }

  /** Creates the next JWT key (prepared). */
  prepareJwt(): { info: AuthorityInfo; key: StoredJwtKey } {
    for (const k of this.#jwt) if (k.state === 'prepared') k.state = 'old';
    const k = this.#newJwt('prepared');
    this.#jwt.push(k);
    return { info: this.jwtAuthorities().at(-1)!, key: this.bundleJwt().at(-1)! };
  }

  /** Makes the prepared X.509 CA active; the previously active one becomes old. */
  activateX509(): AuthorityInfo {
    return activate(this.#x509, 'X.509', this.x509Authorities.bind(this), (x) => x.id);
  }

  /** Makes the prepared JWT key active; the previously active one becomes old. */
  activateJwt(): AuthorityInfo {
    return activate(this.#jwt, 'JWT', this.jwtAuthorities.bind(this), (k) => k.kid);
  }

  /** Marks an old authority tainted (SPIRE only taints old authorities). */
  taint(kind: 'x509' | 'jwt', authorityId: string): void {
    const e = this.#find(kind, authorityId);
    if (e.state !== 'old') throw new TypeError(`only an old ${kind} authority can be tainted`);
    e.tainted = true;
  }

  /** Removes an old authority (SPIRE revokes only old authorities). */
  revoke(kind: 'x509' | 'jwt', authorityId: string): void {
    const e = this.#find(kind, authorityId);
    if (e.state !== 'old') throw new TypeError(`only an old ${kind} authority can be revoked`);
    const list: { state: AuthorityState }[] = kind === 'x509' ? this.#x509 : this.#jwt;
    list.splice(list.indexOf(e), 1);
  }

  #find(kind: 'x509' | 'jwt', authorityId: string): { state: AuthorityState; tainted: boolean } {
    const e =
      kind === 'x509'
        ? this.#x509.find((x) => x.id === authorityId)
        : this.#jwt.find((k) => k.kid === authorityId);
    if (!e) throw new TypeError(`no ${kind} authority ${JSON.stringify(authorityId)}`);
    return e;
  }

  /**
   * Issues an X509-SVID for `id` with a fresh key, signed by the active CA (what
   * `spire-server x509 mint` does). For admin SVIDs and the server's own TLS identity.
   */
  async issueSvid(id: SpiffeId, ttlSeconds: number): Promise<IssuedCert> {
    const { notBefore, notAfter } = this.#lifetime(ttlSeconds);
    return createX509Svid({ id, issuer: this.activeCa(), notBefore, notAfter, keyAlg: 'ec-p256' });
  }

  #lifetime(ttlSeconds: number): { notBefore: Date; notAfter: Date } {
    const now = this.#opts.now();
    const ttl = ttlSeconds > 0 ? ttlSeconds : this.#opts.defaultX509SvidTtlSeconds;
    const cap = Date.parse(this.activeCa().certificate.validTo);
    return {
      notBefore: new Date(now - NOT_BEFORE_CUSHION_MS),
      notAfter: new Date(Math.min(now + ttl * 1000, cap)),
    };
  }

  /**
   * SPIRE's MintX509SVID (`pkg/server/api/svid/v1/service.go`): the same checks in the same order
   * with the same messages, then signing with the active CA. TTL 0 means the default, and the
   * lifetime is capped at the CA's expiry.
   */
  async mintX509Svid(csrDer: Uint8Array, ttlSeconds: number): Promise<MintedSvid | MintRefusal> {
    const invalid = (message: string): MintRefusal => ({ code: 'INVALID_ARGUMENT', message });
    if (csrDer.length === 0) return invalid('missing CSR');
    let csr: Pkcs10CertificateRequest;
    try {
      csr = new Pkcs10CertificateRequest(Uint8Array.from(csrDer));
    } catch (err) {
      return invalid(`malformed CSR: ${err instanceof Error ? err.message : String(err)}`);
    }
    let verified = false;
    try {
      verified = await csr.verify(webcrypto as never);
    } catch {
      verified = false;
    }
    if (!verified) return invalid('failed to verify CSR signature: signature does not verify');
    const san = csr.extensions.find((e) => e instanceof SubjectAlternativeNameExtension) as
      | SubjectAlternativeNameExtension
      | undefined;
    const names = san?.names.items ?? [];
    const uris = names.filter((n) => n.type === 'url').map((n) => n.value);
    const dnsNames = names.filter((n) => n.type === 'dns').map((n) => n.value);
    if (uris.length === 0) return invalid('CSR URI SAN is required');
    if (uris.length > 1) return invalid('only one URI SAN is expected');
    const raw = uris[0]!;
    const parsed = goSpiffeIdFromString(raw);
    if (!parsed.ok) return invalid(`CSR URI SAN is invalid: ${parsed.error}`);
    const td = this.#opts.trustDomain.name;
    const quoted = JSON.stringify(raw);
    if (parsed.value.trustDomain !== td) {
      return invalid(`CSR URI SAN is invalid: ${quoted} is not a member of trust domain "${td}"`);
    }
    if (parsed.value.path === '') {
      return invalid(
        `CSR URI SAN is invalid: ${quoted} is not a workload in trust domain "${td}"; path is empty`,
      );
    }
    if (parsed.value.path === '/spire' || parsed.value.path.startsWith('/spire/')) {
      return invalid(
        `CSR URI SAN is invalid: ${quoted} is not a workload in trust domain "${td}"; path is in the reserved namespace`,
      );
    }
    for (const name of dnsNames) {
      if (
        !/^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
          name,
        )
      ) {
        return invalid(`CSR DNS name is invalid: label does not match regex: ${name}`);
      }
    }
    const { notBefore, notAfter } = this.#lifetime(ttlSeconds);
    try {
      const cert = await signCsr({
        csrDer,
        issuer: this.activeCa(),
        id: SpiffeId.parse(raw),
        notBefore,
        notAfter,
        dnsNames,
      });
      return {
        certChain: [cert.der],
        trustDomain: td,
        path: parsed.value.path,
        expiresAt: Math.floor(notAfter.getTime() / 1000),
      };
    } catch (err) {
      return {
        code: 'INTERNAL',
        message: `failed to sign X509-SVID: ${err instanceof Error ? err.message : String(err)}`,
      };
    }
  }
}

function activate<T extends { state: AuthorityState }>(
  list: T[],
  what: string,
  infos: () => AuthorityInfo[],
  idOf: (e: T) => string,
): AuthorityInfo {
  const next = list.find((e) => e.state === 'prepared');
  if (!next) throw new TypeError(`no prepared ${what} authority to activate`);
  for (const e of list) if (e.state === 'active') e.state = 'old';
  next.state = 'active';
  return infos().find((i) => i.authorityId === idOf(next))!;
}
