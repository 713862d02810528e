/**
 * The emulator's in-memory stand-in for SPIRE's SQL datastore: bundles and federation
 * relationships with SPIRE's row-id paging and create/update/set/append/delete semantics
 * (SPIRE v1.15 `pkg/server/datastore/sqlstore/sqlstore.go`). Pure; no gRPC.
 * @module
 */

/** One stored X.509 authority. */
export interface StoredX509 {
  readonly der: Uint8Array;
  readonly tainted: boolean;
}

/** One stored JWT authority. */
export interface StoredJwtKey {
  readonly spki: Uint8Array;
  readonly kid: string;
  /** Unix seconds; 0n = no expiry. */
  readonly notAfter: bigint;
  readonly tainted: boolean;
}

/** A stored bundle, kept exactly as given (SPIRE stores refresh hint and sequence as given). */
export interface StoredBundle {
  /** Bare trust domain name. */
  readonly trustDomain: string;
  readonly x509: readonly StoredX509[];
  readonly jwt: readonly StoredJwtKey[];
  /** int64 seconds. */
  readonly refreshHint: bigint;
  /** uint64. */
  readonly sequence: bigint;
}

/** Which fields an update copies (SPIRE's BundleMask; absent = all). */
export interface StoredBundleMask {
  readonly x509: boolean;
  readonly jwt: boolean;
  readonly refreshHint: boolean;
  readonly sequence: boolean;
}

/** A stored relationship's bundle endpoint profile. */
export type StoredProfile =
  | { readonly type: 'https_web' }
  | { readonly type: 'https_spiffe'; readonly endpointSpiffeId: string };

/** A stored federation relationship (its bundle lives in the bundle table). */
export interface StoredRelationship {
  readonly trustDomain: string;
  readonly bundleEndpointUrl: string;
  readonly profile: StoredProfile;
}

/** Which relationship fields an update copies. */
export interface StoredRelationshipMask {
  readonly bundleEndpointUrl: boolean;
  readonly bundleEndpointProfile: boolean;
  readonly trustDomainBundle: boolean;
}

/** Paging request: SPIRE's datastore pagination (page size > 0, token = last row id or ''). */
export interface PageRequest {
  readonly size: number;
  readonly token: string;
}

/** A page: the rows read and the next token ('' when the page read no row). */
export interface Page<T> {
  readonly items: T[];
  /** Present only when paging was requested. */
  readonly token?: string;
}

/** How BatchDeleteFederatedBundle treats registration entries that federate with the bundle. */
export type DeleteMode = 'RESTRICT' | 'DELETE' | 'DISSOCIATE';

interface Row<T> {
  readonly id: number;
  value: T;
}

/** Largest token value SPIRE v1.15 parses (`strconv.ParseUint(token, 10, 32)`). */
const MAX_TOKEN = 0xffff_ffff;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function sameX509(a: StoredX509, b: StoredX509): boolean {
  return a.tainted === b.tainted && sameBytes(a.der, b.der);
}

function sameJwt(a: StoredJwtKey, b: StoredJwtKey): boolean {
  return a.kid === b.kid && a.notAfter === b.notAfter && a.tainted === b.tainted && sameBytes(a.spki, b.spki);
}

function copyBundle(b: StoredBundle): StoredBundle {
  return {
    trustDomain: b.trustDomain,
    x509: b.x509.map((x) => ({ der: Uint8Array.from(x.der), tainted: x.tainted })),
    jwt: b.jwt.map((k) => ({
      spki: Uint8Array.from(k.spki),
      kid: k.kid,
      notAfter: k.notAfter,
      tainted: k.tainted,
    })),
    refreshHint: b.refreshHint,
    sequence: b.sequence,
  };
}

/** The SPIRE token check: decimal, fits 32 bits. */
function parseToken(token: string): number | undefined {
  if (!/^\d+$/.test(token)) return undefined;
  const n = Number(token);
  return n <= MAX_TOKEN ? n : undefined;
}

function page<T>(rows: Iterable<Row<T>>, req: PageRequest | undefined): Page<T> | { badToken: string } {
  const sorted = [...rows].sort((a, b) => a.id - b.id);
  if (req === undefined) return { items: sorted.map((r) => r.value) };
  let after = 0;
  if (req.token.length > 0) {
    const t = parseToken(req.token);
    if (t === undefined) return { badToken: req.token };
    after = t;
  }
  const read = sorted.filter((r) => r.id > after).slice(0, req.size);
  // SPIRE sets the token whenever the page read at least one row, so the client needs one more
  // call that reads nothing and gets '' back.
  const last = read[read.length - 1];
  return { items: read.map((r) => r.value), token: last === undefined ? '' : String(last.id) };
}

/** In-memory bundles and relationships with SPIRE's datastore semantics. */
export class EmulatorDatastore {
  readonly #bundles = new Map<string, Row<StoredBundle>>();
  readonly #relationships = new Map<string, Row<StoredRelationship>>();
  readonly #federatingEntries = new Map<string, number>();
  #nextBundleId = 1;
  #nextRelationshipId = 1;

  /** Number of stored bundles, the server's own included. */
  countBundles(): number {
    return this.#bundles.size;
  }

  fetchBundle(trustDomain: string): StoredBundle | undefined {
    const row = this.#bundles.get(trustDomain);
    return row ? copyBundle(row.value) : undefined;
  }

  /** INSERT: refuses an existing trust domain. */
  createBundle(b: StoredBundle): StoredBundle | 'already-exists' {
    if (this.#bundles.has(b.trustDomain)) return 'already-exists';
    this.#bundles.set(b.trustDomain, { id: this.#nextBundleId++, value: copyBundle(b) });
    return copyBundle(b);
  }

  /** UPDATE with an optional field mask (absent = replace all); the row keeps its id. */
  updateBundle(b: StoredBundle, mask?: StoredBundleMask): StoredBundle | 'not-found' {
    const row = this.#bundles.get(b.trustDomain);
    if (!row) return 'not-found';
    const m = mask ?? { x509: true, jwt: true, refreshHint: true, sequence: true };
    const cur = row.value;
    row.value = copyBundle({
      trustDomain: cur.trustDomain,
      x509: m.x509 ? b.x509 : cur.x509,
      jwt: m.jwt ? b.jwt : cur.jwt,
      refreshHint: m.refreshHint ? b.refreshHint : cur.refreshHint,
      sequence: m.sequence ? b.sequence : cur.sequence,
    });
    return copyBundle(row.value);
  }

  /** Upsert: create when missing, else full replace. */
  setBundle(b: StoredBundle): StoredBundle {
    const r = this.updateBundle(b);
    if (r !== 'not-found') return r;
    return this.createBundle(b) as StoredBundle;
  }

  /**
   * Merges authorities into a bundle (creating it when missing); entries equal in every field are
   * not added twice. The sequence number goes up by one when anything was added.
   */
  appendBundle(b: StoredBundle): StoredBundle {
    const row = this.#bundles.get(b.trustDomain);
    if (!row) return this.createBundle(b) as StoredBundle;
    const cur = row.value;
    const x509 = [...cur.x509];
    const jwt = [...cur.jwt];
    let changed = false;
    for (const x of b.x509) {
      if (!x509.some((y) => sameX509(x, y))) {
        x509.push(x);
        changed = true;
      }
    }
    for (const k of b.jwt) {
      if (!jwt.some((y) => sameJwt(k, y))) {
        jwt.push(k);
        changed = true;
      }
    }
    if (changed) row.value = copyBundle({ ...cur, x509, jwt, sequence: cur.sequence + 1n });
    return copyBundle(row.value);
  }

  /**
   * Replaces a bundle's authorities through `edit` and bumps its sequence when they changed (the
   * emulator's stand-in for SPIRE's own prune/taint/revoke bundle updates).
   */
  editBundle(trustDomain: string, edit: (b: StoredBundle) => StoredBundle): StoredBundle | 'not-found' {
    const row = this.#bundles.get(trustDomain);
    if (!row) return 'not-found';
    const next = edit(copyBundle(row.value));
    const changed =
      next.x509.length !== row.value.x509.length ||
      next.jwt.length !== row.value.jwt.length ||
      next.x509.some((x, i) => !sameX509(x, row.value.x509[i]!)) ||
      next.jwt.some((k, i) => !sameJwt(k, row.value.jwt[i]!));
    row.value = copyBundle(changed ? { ...next, sequence: row.value.sequence + 1n } : row.value);
    return copyBundle(row.value);
  }

  /**
   * Deletes a bundle. In RESTRICT mode a bundle that registration entries federate with is kept
   * and the number of such entries returned; DELETE and DISSOCIATE clear them.
   */
  deleteBundle(trustDomain: string, mode: DeleteMode): 'ok' | 'not-found' | { federatedEntries: number } {
    if (!this.#bundles.has(trustDomain)) return 'not-found';
    const entries = this.#federatingEntries.get(trustDomain) ?? 0;
    if (entries > 0 && mode === 'RESTRICT') return { federatedEntries: entries };
    this.#federatingEntries.delete(trustDomain);
    this.#bundles.delete(trustDomain);
    return 'ok';
  }

  /** Bundles in row-id order; with `req`, one page of them (see {@link page}). */
  listBundles(req?: PageRequest): Page<StoredBundle> | { badToken: string } {
    const r = page(this.#bundles.values(), req);
    return 'badToken' in r ? r : { ...r, items: r.items.map(copyBundle) };
  }

  /**
   * Simulates `n` registration entries federating with `trustDomain` (the emulator has no entry
   * API), so RESTRICT deletes fail as in SPIRE.
   */
  setFederatingEntries(trustDomain: string, n: number): void {
    if (n > 0) this.#federatingEntries.set(trustDomain, n);
    else this.#federatingEntries.delete(trustDomain);
  }

  fetchRelationship(trustDomain: string): StoredRelationship | undefined {
    return this.#relationships.get(trustDomain)?.value;
  }

  /** INSERT; a given bundle is upserted first (SPIRE does it in the same transaction). */
  createRelationship(rel: StoredRelationship, bundle?: StoredBundle): 'ok' | 'already-exists' {
    if (this.#relationships.has(rel.trustDomain)) return 'already-exists';
    if (bundle) this.setBundle(bundle);
    this.#relationships.set(rel.trustDomain, { id: this.#nextRelationshipId++, value: rel });
    return 'ok';
  }

  /** UPDATE of the masked fields; the bundle is upserted only when masked and given. */
  updateRelationship(
    rel: StoredRelationship,
    mask: StoredRelationshipMask,
    bundle?: StoredBundle,
  ): StoredRelationship | 'not-found' {
    const row = this.#relationships.get(rel.trustDomain);
    if (!row) return 'not-found';
    row.value = {
      trustDomain: row.value.trustDomain,
      bundleEndpointUrl: mask.bundleEndpointUrl ? rel.bundleEndpointUrl : row.value.bundleEndpointUrl,
      profile: mask.bundleEndpointProfile ? rel.profile : row.value.profile,
    };
    if (mask.trustDomainBundle && bundle) this.setBundle(bundle);
    return row.value;
  }

  /** Deletes the relationship only; its bundle stays. */
  deleteRelationship(trustDomain: string): 'ok' | 'not-found' {
    return this.#relationships.delete(trustDomain) ? 'ok' : 'not-found';
  }

  listRelationships(req?: PageRequest): Page<StoredRelationship> | { badToken: string } {
    return page(this.#relationships.values(), req);
  }
}
