/**
 * The emulator's RPC semantics, transport-free: each method takes a decoded request and returns
 * the response or a gRPC status, with SPIRE v1.15's checks, order and messages
 * (`pkg/server/api/{bundle,trustdomain,svid,health}/v1/service.go`, `pkg/server/api/bundle.go`,
 * `pkg/server/api/trustdomain.go`; summarised in /work/shared/conformance/spire-server-api.md).
 * Where the emulator cannot reproduce Go's inner error text (x509/asn1 parse errors) the SPIRE
 * prefix is kept and the tail differs; docs/spire-emulator.md lists those places.
 * @module
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import type { GrpcStatusName } from '../status.js';
import type {
  WireBundle,
  WireBundleMask,
  WireFederationRelationship,
  WireFederationRelationshipMask,
  WireJwtKey,
  WireServingStatus,
  WireStatus,
  WireX509Certificate,
} from '../wire.js';
import type { EmulatorAuthorities } from './authority.js';
import type {
  DeleteMode,
  EmulatorDatastore,
  StoredBundle,
  StoredJwtKey,
  StoredProfile,
  StoredRelationship,
  StoredX509,
} from './datastore.js';
import { goSpiffeIdFromString, goTrustDomainFromString } from './go-spiffe.js';

/** A response, or the gRPC status to fail the call with. */
export type Outcome<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: GrpcStatusName; readonly message: string };

function ok<T>(value: T): Outcome<T> {
  return { ok: true, value };
}
function fail<T>(code: GrpcStatusName, message: string): Outcome<T> {
  return { ok: false, code, message };
}

const STATUS_NUMBERS: Record<string, number> = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
};

function status(code: keyof typeof STATUS_NUMBERS, message: string): WireStatus {
  return { code: STATUS_NUMBERS[code]!, message };
}
const OK_STATUS: WireStatus = { code: 0, message: 'OK' };

/** Requests as they arrive (loader defaults fill every scalar; absent messages are null). */
type Mask = WireBundleMask | null | undefined;
type RelMask = WireFederationRelationshipMask | null | undefined;

/** What the semantics need from the emulator around them. */
export interface SemanticsContext {
  /** The server's own trust domain name. */
  readonly trustDomain: string;
  readonly datastore: EmulatorDatastore;
  readonly authorities: () => EmulatorAuthorities;
  /** Health override; SERVING when the own bundle is stored, unless this says otherwise. */
  readonly servingOverride: () => WireServingStatus | undefined;
  /** Called by RefreshBundle for an existing relationship; no-op when absent. */
  readonly refreshBundle?: (trustDomain: string) => Promise<void>;
}

// ---- conversions (SPIRE api.ProtoToBundle / api.BundleToProto) ----

function parseX509(list: readonly WireX509Certificate[]): StoredX509[] | string {
  const out: StoredX509[] = [];
  for (const a of list) {
    const der = Uint8Array.from(a.asn1 ?? []);
    // Go's x509.ParseCertificates accepts concatenated DER and empty input.
    let i = 0;
    while (i < der.length) {
      const len = derLength(der, i);
      if (len === undefined) return 'x509: malformed certificate';
      try {
        new X509Certificate(der.subarray(i, i + len));
      } catch {
        return 'x509: malformed certificate';
      }
      i += len;
    }
    out.push({ der, tainted: false });
  }
  return out;
}

/** Total length of the DER TLV starting at `i`, or undefined when malformed/truncated. */
function derLength(b: Uint8Array, i: number): number | undefined {
  if (b[i] !== 0x30) return undefined;
  const first = b[i + 1];
  if (first === undefined) return undefined;
  let len: number;
  let header = 2;
  if (first < 0x80) len = first;
  else {
    const n = first & 0x7f;
    if (n === 0 || n > 4) return undefined;
    len = 0;
    for (let k = 0; k < n; k++) {
      const v = b[i + 2 + k];
      if (v === undefined) return undefined;
      len = len * 256 + v;
    }
    header += n;
  }
  return i + header + len <= b.length ? header + len : undefined;
}

function parseJwt(list: readonly WireJwtKey[]): StoredJwtKey[] | string {
  const out: StoredJwtKey[] = [];
  for (const k of list) {
    const spki = Uint8Array.from(k.public_key ?? []);
    try {
      createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    } catch {
      return 'x509: malformed public key';
    }
    if (!k.key_id) return 'missing key ID';
    out.push({ spki, kid: k.key_id, notAfter: BigInt(k.expires_at || '0'), tainted: false });
  }
  return out;
}

function protoToBundle(b: WireBundle): StoredBundle | string {
  const td = goTrustDomainFromString(b.trust_domain ?? '');
  if (!td.ok) return `invalid trust domain: ${td.error}`;
  const x509 = parseX509(b.x509_authorities ?? []);
  if (typeof x509 === 'string') return `unable to parse X.509 authority: ${x509}`;
  const jwt = parseJwt(b.jwt_authorities ?? []);
  if (typeof jwt === 'string') return `unable to parse JWT authority: ${jwt}`;
  return {
    trustDomain: td.value,
    x509,
    jwt,
    refreshHint: BigInt(b.refresh_hint || '0'),
    sequence: BigInt(b.sequence_number || '0'),
  };
}

function bundleToProto(b: StoredBundle, mask: Mask): WireBundle {
  const all = mask === null || mask === undefined;
  return {
    trust_domain: b.trustDomain,
    x509_authorities:
      all || mask.x509_authorities
        ? b.x509.map((x) => ({ asn1: Buffer.from(x.der), tainted: x.tainted }))
        : [],
    jwt_authorities:
      all || mask.jwt_authorities
        ? b.jwt.map((k) => ({
            public_key: Buffer.from(k.spki),
            key_id: k.kid,
            expires_at: k.notAfter.toString(),
            tainted: k.tainted,
          }))
        : [],
    refresh_hint: all || mask.refresh_hint ? b.refreshHint.toString() : '0',
    sequence_number: all || mask.sequence_number ? b.sequence.toString() : '0',
    wit_authorities: [],
  };
}

function toMask(
  m: Mask,
): { x509: boolean; jwt: boolean; refreshHint: boolean; sequence: boolean } | undefined {
  if (m === null || m === undefined) return undefined;
  return {
    x509: m.x509_authorities,
    jwt: m.jwt_authorities,
    refreshHint: m.refresh_hint,
    sequence: m.sequence_number,
  };
}

// ---- federation relationship conversions (api.ProtoToFederationRelationship & back) ----

interface ParsedRelationship {
  rel: StoredRelationship;
  bundle?: StoredBundle;
}

function checkBundleEndpointUrl(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `failed to parse bundle endpoint URL: parse ${JSON.stringify(raw)}: invalid URL`;
  }
  if (url.protocol !== 'https:') return 'bundle endpoint URL must use the https scheme';
  if (url.host === '') return 'bundle endpoint URL must specify the host';
  if (url.username !== '' || url.password !== '') return 'bundle endpoint URL must not contain user info';
  return undefined;
}

function protoToRelationship(f: WireFederationRelationship): ParsedRelationship | string {
  const td = goTrustDomainFromString(f.trust_domain ?? '');
  if (!td.ok) return `failed to parse trust domain: ${td.error}`;
  const urlErr = checkBundleEndpointUrl(f.bundle_endpoint_url ?? '');
  if (urlErr) return urlErr;
  let profile: StoredProfile;
  const which =
    f.bundle_endpoint_profile ?? (f.https_spiffe ? 'https_spiffe' : f.https_web ? 'https_web' : undefined);
  if (which === 'https_spiffe') {
    const raw = f.https_spiffe?.endpoint_spiffe_id ?? '';
    const id = goSpiffeIdFromString(raw);
    if (!id.ok) return `failed to parse endpoint SPIFFE ID: ${id.error}`;
    profile = { type: 'https_spiffe', endpointSpiffeId: raw };
  } else if (which === 'https_web') {
    profile = { type: 'https_web' };
  } else {
    return 'unsupported bundle endpoint profile type: <nil>';
  }
  const out: ParsedRelationship = {
    rel: { trustDomain: td.value, bundleEndpointUrl: f.bundle_endpoint_url, profile },
  };
  if (f.trust_domain_bundle) {
    const b = protoToBundle(f.trust_domain_bundle);
    if (typeof b === 'string') return `failed to parse bundle: ${b}`;
    if (b.trustDomain !== td.value) {
      return `trust domain bundle (${JSON.stringify(f.trust_domain_bundle.trust_domain)}) must match the trust domain of the federation relationship (${JSON.stringify(td.value)})`;
    }
    out.bundle = b;
  }
  return out;
}

function relationshipToProto(
  r: StoredRelationship,
  bundle: StoredBundle | undefined,
  mask: RelMask,
): WireFederationRelationship {
  const all = mask === null || mask === undefined;
  const out: WireFederationRelationship = {
    trust_domain: r.trustDomain,
    bundle_endpoint_url: all || mask.bundle_endpoint_url ? r.bundleEndpointUrl : '',
    trust_domain_bundle: bundle && (all || mask.trust_domain_bundle) ? bundleToProto(bundle, null) : null,
  };
  if (all || mask.bundle_endpoint_profile) {
    if (r.profile.type === 'https_web') out.https_web = {};
    else out.https_spiffe = { endpoint_spiffe_id: r.profile.endpointSpiffeId };
  }
  return out;
}

const DELETE_MODES: Record<string, DeleteMode> = {
  RESTRICT: 'RESTRICT',
  DELETE: 'DELETE',
  DISSOCIATE: 'DISSOCIATE',
};

/** SPIRE's server API semantics over an {@link EmulatorDatastore}. */
export class SpireSemantics {
  readonly #c: SemanticsContext;

  constructor(context: SemanticsContext) {
    this.#c = context;
  }

  get #ds(): EmulatorDatastore {
    return this.#c.datastore;
  }

  // ---- Bundle service ----

  CountBundles(): Outcome<{ count: number }> {
    return ok({ count: this.#ds.countBundles() });
  }

  GetBundle(req: { output_mask: Mask }): Outcome<WireBundle> {
    const b = this.#ds.fetchBundle(this.#c.trustDomain);
    if (!b) return fail('NOT_FOUND', 'bundle not found');
    return ok(bundleToProto(b, req.output_mask));
  }

  AppendBundle(req: {
    x509_authorities: WireX509Certificate[];
    jwt_authorities: WireJwtKey[];
    output_mask: Mask;
  }): Outcome<WireBundle> {
    if ((req.jwt_authorities ?? []).length === 0 && (req.x509_authorities ?? []).length === 0) {
      return fail('INVALID_ARGUMENT', 'no authorities to append');
    }
    const jwt = parseJwt(req.jwt_authorities ?? []);
    if (typeof jwt === 'string') return fail('INVALID_ARGUMENT', `failed to convert JWT authority: ${jwt}`);
    const x509 = parseX509(req.x509_authorities ?? []);
    if (typeof x509 === 'string')
      return fail('INVALID_ARGUMENT', `failed to convert X.509 authority: ${x509}`);
    const b = this.#ds.appendBundle({
      trustDomain: this.#c.trustDomain,
      x509,
      jwt,
      refreshHint: 0n,
      sequence: 0n,
    });
    return ok(bundleToProto(b, req.output_mask));
  }

  ListFederatedBundles(req: {
    output_mask: Mask;
    page_size: number;
    page_token: string;
  }): Outcome<{ bundles: WireBundle[]; next_page_token: string }> {
    const r = this.#ds.listBundles(
      req.page_size > 0 ? { size: req.page_size, token: req.page_token } : undefined,
    );
    if ('badToken' in r) {
      return fail('INTERNAL', `failed to list bundles: could not parse token '${r.badToken}'`);
    }
    // The own bundle is dropped after paging, so a page may be short or empty.
    const bundles = r.items
      .filter((b) => b.trustDomain !== this.#c.trustDomain)
      .map((b) => bundleToProto(b, req.output_mask));
    return ok({ bundles, next_page_token: r.token ?? '' });
  }

  GetFederatedBundle(req: { trust_domain: string; output_mask: Mask }): Outcome<WireBundle> {
    const td = goTrustDomainFromString(req.trust_domain);
    if (!td.ok) return fail('INVALID_ARGUMENT', `trust domain argument is not valid: ${td.error}`);
    if (td.value === this.#c.trustDomain) {
      return fail(
        'INVALID_ARGUMENT',
        "getting a federated bundle for the server's own trust domain is not allowed",
      );
    }
    const b = this.#ds.fetchBundle(td.value);
    if (!b) return fail('NOT_FOUND', 'bundle not found');
    return ok(bundleToProto(b, req.output_mask));
  }

  #federatedItem(
    b: WireBundle,
    verb: 'creating' | 'updating' | 'setting',
  ): { bundle: StoredBundle } | { status: WireStatus } {
    const td = goTrustDomainFromString(b.trust_domain ?? '');
    if (!td.ok)
      return { status: status('INVALID_ARGUMENT', `trust domain argument is not valid: ${td.error}`) };
    if (td.value === this.#c.trustDomain) {
      return {
        status: status(
          'INVALID_ARGUMENT',
          `${verb} a federated bundle for the server's own trust domain is not allowed`,
        ),
      };
    }
    const converted = protoToBundle(b);
    if (typeof converted === 'string') {
      return { status: status('INVALID_ARGUMENT', `failed to convert bundle: ${converted}`) };
    }
    return { bundle: converted };
  }

  BatchCreateFederatedBundle(req: { bundle: WireBundle[]; output_mask: Mask }): Outcome<{
    results: { status: WireStatus; bundle: WireBundle | null }[];
  }> {
    const results = (req.bundle ?? []).map((b) => {
      const item = this.#federatedItem(b, 'creating');
      if ('status' in item) return { status: item.status, bundle: null };
      const created = this.#ds.createBundle(item.bundle);
      if (created === 'already-exists')
        return { status: status('ALREADY_EXISTS', 'bundle already exists'), bundle: null };
      return { status: OK_STATUS, bundle: bundleToProto(created, req.output_mask) };
    });
    return ok({ results });
  }

  BatchUpdateFederatedBundle(req: { bundle: WireBundle[]; input_mask: Mask; output_mask: Mask }): Outcome<{
    results: { status: WireStatus; bundle: WireBundle | null }[];
  }> {
    const results = (req.bundle ?? []).map((b) => {
      const item = this.#federatedItem(b, 'updating');
      if ('status' in item) return { status: item.status, bundle: null };
      const updated = this.#ds.updateBundle(item.bundle, toMask(req.input_mask));
      if (updated === 'not-found') return { status: status('NOT_FOUND', 'bundle not found'), bundle: null };
      return { status: OK_STATUS, bundle: bundleToProto(updated, req.output_mask) };
    });
    return ok({ results });
  }

  BatchSetFederatedBundle(req: { bundle: WireBundle[]; output_mask: Mask }): Outcome<{
    results: { status: WireStatus; bundle: WireBundle | null }[];
  }> {
    const results = (req.bundle ?? []).map((b) => {
      const item = this.#federatedItem(b, 'setting');
      if ('status' in item) return { status: item.status, bundle: null };
      return { status: OK_STATUS, bundle: bundleToProto(this.#ds.setBundle(item.bundle), req.output_mask) };
    });
    return ok({ results });
  }

  BatchDeleteFederatedBundle(req: { trust_domains: string[]; mode: string | number }): Outcome<{
    results: { status: WireStatus; trust_domain: string }[];
  }> {
    const mode = typeof req.mode === 'string' ? DELETE_MODES[req.mode] : undefined;
    if (mode === undefined) {
      return fail('INVALID_ARGUMENT', `failed to parse deletion mode: unhandled delete mode "${req.mode}"`);
    }
    const results = (req.trust_domains ?? []).map((raw) => {
      const td = goTrustDomainFromString(raw);
      if (!td.ok) {
        return {
          status: status('INVALID_ARGUMENT', `trust domain argument is not valid: ${td.error}`),
          trust_domain: raw,
        };
      }
      if (td.value === this.#c.trustDomain) {
        return {
          status: status(
            'INVALID_ARGUMENT',
            'removing the bundle for the server trust domain is not allowed',
          ),
          trust_domain: raw,
        };
      }
      const r = this.#ds.deleteBundle(td.value, mode);
      if (r === 'ok') return { status: OK_STATUS, trust_domain: raw };
      if (r === 'not-found') return { status: status('NOT_FOUND', 'bundle not found'), trust_domain: raw };
      return {
        status: status(
          'FAILED_PRECONDITION',
          `failed to delete federated bundle: datastore-sql: cannot delete bundle; federated with ${r.federatedEntries} registration entries`,
        ),
        trust_domain: raw,
      };
    });
    return ok({ results });
  }

  PublishJWTAuthority(): Outcome<never> {
    return fail('UNIMPLEMENTED', 'PublishJWTAuthority is not implemented by the SPIRE emulator');
  }

  PublishWITAuthority(): Outcome<never> {
    return fail('UNIMPLEMENTED', 'WIT-SVID functionality is not yet implemented');
  }

  // ---- TrustDomain service ----

  #relationshipOut(r: StoredRelationship, mask: RelMask): WireFederationRelationship {
    return relationshipToProto(r, this.#ds.fetchBundle(r.trustDomain), mask);
  }

  ListFederationRelationships(req: {
    output_mask: RelMask;
    page_size: number;
    page_token: string;
  }): Outcome<{ federation_relationships: WireFederationRelationship[]; next_page_token: string }> {
    const r = this.#ds.listRelationships(
      req.page_size > 0 ? { size: req.page_size, token: req.page_token } : undefined,
    );
    if ('badToken' in r) {
      return fail(
        'INTERNAL',
        `failed to list federation relationships: could not parse token '${r.badToken}'`,
      );
    }
    return ok({
      federation_relationships: r.items.map((x) => this.#relationshipOut(x, req.output_mask)),
      next_page_token: r.token ?? '',
    });
  }

  GetFederationRelationship(req: {
    trust_domain: string;
    output_mask: RelMask;
  }): Outcome<WireFederationRelationship> {
    const td = goTrustDomainFromString(req.trust_domain);
    if (!td.ok) return fail('INVALID_ARGUMENT', `failed to parse trust domain: ${td.error}`);
    const r = this.#ds.fetchRelationship(td.value);
    if (!r) return fail('NOT_FOUND', 'federation relationship does not exist');
    return ok(this.#relationshipOut(r, req.output_mask));
  }

  BatchCreateFederationRelationship(req: {
    federation_relationships: WireFederationRelationship[];
    output_mask: RelMask;
  }): Outcome<{
    results: { status: WireStatus; federation_relationship: WireFederationRelationship | null }[];
  }> {
    const results = (req.federation_relationships ?? []).map((f) => {
      const p = protoToRelationship(f);
      if (typeof p === 'string') {
        return {
          status: status('INVALID_ARGUMENT', `failed to convert federation relationship: ${p}`),
          federation_relationship: null,
        };
      }
      if (p.rel.trustDomain === this.#c.trustDomain) {
        return {
          status: status(
            'INVALID_ARGUMENT',
            'unable to create federation relationship for server trust domain',
          ),
          federation_relationship: null,
        };
      }
      if (this.#ds.createRelationship(p.rel, p.bundle) === 'already-exists') {
        return {
          status: status(
            'INTERNAL',
            'failed to create federation relationship: datastore-sql: UNIQUE constraint failed: federated_trust_domains.trust_domain',
          ),
          federation_relationship: null,
        };
      }
      // SPIRE answers with the input (after masking): the bundle only when one was supplied.
      return {
        status: OK_STATUS,
        federation_relationship: relationshipToProto(p.rel, p.bundle, req.output_mask),
      };
    });
    return ok({ results });
  }

  BatchUpdateFederationRelationship(req: {
    federation_relationships: WireFederationRelationship[];
    input_mask: RelMask;
    output_mask: RelMask;
  }): Outcome<{
    results: { status: WireStatus; federation_relationship: WireFederationRelationship | null }[];
  }> {
    const m = req.input_mask;
    const mask = {
      bundleEndpointUrl: m ? m.bundle_endpoint_url : true,
      bundleEndpointProfile: m ? m.bundle_endpoint_profile : true,
      trustDomainBundle: m ? m.trust_domain_bundle : true,
    };
    const results = (req.federation_relationships ?? []).map((f) => {
      // SPIRE validates the whole input whatever the input mask says.
      const p = protoToRelationship(f);
      if (typeof p === 'string') {
        return {
          status: status('INVALID_ARGUMENT', `failed to convert federation relationship: ${p}`),
          federation_relationship: null,
        };
      }
      const r = this.#ds.updateRelationship(p.rel, mask, p.bundle);
      if (r === 'not-found') {
        return {
          status: status(
            'INTERNAL',
            'failed to update federation relationship: unable to fetch federation relationship: record not found',
          ),
          federation_relationship: null,
        };
      }
      return { status: OK_STATUS, federation_relationship: this.#relationshipOut(r, req.output_mask) };
    });
    return ok({ results });
  }

  BatchDeleteFederationRelationship(req: { trust_domains: string[] }): Outcome<{
    results: { status: WireStatus; trust_domain: string }[];
  }> {
    const results = (req.trust_domains ?? []).map((raw) => {
      if (raw === '')
        return { status: status('INVALID_ARGUMENT', 'missing trust domain'), trust_domain: raw };
      const td = goTrustDomainFromString(raw);
      if (!td.ok) {
        return {
          status: status('INVALID_ARGUMENT', `failed to parse trust domain: ${td.error}`),
          trust_domain: raw,
        };
      }
      if (this.#ds.deleteRelationship(td.value) === 'not-found') {
        return { status: status('NOT_FOUND', 'federation relationship not found'), trust_domain: td.value };
      }
      return { status: OK_STATUS, trust_domain: td.value };
    });
    return ok({ results });
  }

  async RefreshBundle(req: { trust_domain: string }): Promise<Outcome<Record<string, never>>> {
    const td = goTrustDomainFromString(req.trust_domain);
    if (!td.ok) return fail('INVALID_ARGUMENT', `failed to parse trust domain: ${td.error}`);
    if (!this.#ds.fetchRelationship(td.value)) {
      return fail('NOT_FOUND', `no relationship with trust domain ${JSON.stringify(td.value)}`);
    }
    try {
      await this.#c.refreshBundle?.(td.value);
    } catch (err) {
      return fail(
        'INTERNAL',
        `failed to refresh bundle: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    return ok({});
  }

  // ---- SVID service ----

  async MintX509SVID(req: { csr: Uint8Array; ttl: number }): Promise<
    Outcome<{
      svid: {
        cert_chain: Uint8Array[];
        id: { trust_domain: string; path: string };
        expires_at: string;
        hint: string;
      };
    }>
  > {
    const r = await this.#c.authorities().mintX509Svid(Uint8Array.from(req.csr ?? []), req.ttl ?? 0);
    if ('code' in r) return fail(r.code, r.message);
    return ok({
      svid: {
        cert_chain: r.certChain.map((c) => Buffer.from(c)),
        id: { trust_domain: r.trustDomain, path: r.path },
        expires_at: String(r.expiresAt),
        hint: '',
      },
    });
  }

  // ---- Health ----

  Check(req: { service: string }): Outcome<{ status: WireServingStatus }> {
    if (req.service !== '') return fail('INVALID_ARGUMENT', 'per-service health is not supported');
    const forced = this.#c.servingOverride();
    if (forced) return ok({ status: forced });
    return ok({ status: this.#ds.fetchBundle(this.#c.trustDomain) ? 'SERVING' : 'NOT_SERVING' });
  }
}
