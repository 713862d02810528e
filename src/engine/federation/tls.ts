import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import type { BundleSource } from '../../core/bundle/source.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { matchId } from '../../core/spiffeid/matcher.js';
import type { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { verifyX509Svid } from '../../core/verify/x509-svid.js';
import { FetchError } from '../../errors.js';

/**
 * TLS for bundle endpoint clients: connection options per SPIFFE Federation profile, and the
 * https_spiffe server authentication done by hand after the handshake.
 * @module
 */

/** Oldest TLS version spoken to a bundle endpoint. */
export const MIN_TLS_VERSION = 'TLSv1.2';

/** How the server of one connection is authenticated. */
export type EndpointAuth =
  | {
      readonly kind: 'https_web';
      /** PEM CA certificates to trust instead of Node's default roots; undefined = default roots. */
      readonly caPem?: string;
    }
  | {
      readonly kind: 'https_spiffe';
      /** The exact SPIFFE ID the endpoint server must present (Federation §5.2.2.2). */
      readonly endpointSpiffeId: SpiffeId;
      /**
       * The bundle of the endpoint ID's trust domain: a live source, looked up at every connection
       * so the latest accepted bundle is used (Federation §5.2.2.4), or one bundle (the bootstrap
       * bundle on first contact).
       */
      readonly bundles: BundleSource | TrustBundle;
    };

/**
 * ALPN `http/1.1` in wire format, as a DataView (a form node:tls documents). A socket keeps its
 * ALPN list for life; given an array or a Uint8Array, node:tls copies it into a slice of its
 * shared Buffer pool, and the slice pins the whole pool slab — 8 KiB on Node 20, 64 KiB on
 * Node 24 — for as long as the connection is kept open (a heap snapshot at 1,000 kept
 * connections found 446 slabs pinned that way). A DataView is copied into its own 9 bytes.
 */
const ALPN_HTTP11 = new DataView(new Uint8Array([8, ...new TextEncoder().encode('http/1.1')]).buffer);

/**
 * Options for `tls.connect` to `target` under `auth`. Never a client certificate (bundle endpoints
 * must not require one, Federation §5.2.1.3 / §5.2.2.3). https_web resumes a cached TLS session
 * with the same endpoint under the same CA set ({@link tlsSessions}); https_spiffe never does.
 *
 * - https_web: normal CA verification (`rejectUnauthorized`) and the RFC 6125 host name check
 *   against the URL's host (Federation §5.2.1.4).
 * - https_spiffe: the handshake accepts any certificate; {@link authenticateSpiffeServer} must then
 *   verify the presented chain before a single byte of HTTP is sent. The host name is not checked
 *   in this profile (Federation §5.2.2.4: identity is the SPIFFE ID).
 */
export function tlsConnectOptions(target: URL, auth: EndpointAuth): tls.ConnectionOptions {
  const host = hostOf(target);
  const opts: tls.ConnectionOptions = {
    host,
    port: target.port === '' ? 443 : Number(target.port),
    minVersion: MIN_TLS_VERSION,
    ALPNProtocols: ALPN_HTTP11,
  };
  // SNI carries DNS names only (RFC 6066 §3).
  if (isIP(host) === 0) opts.servername = host;
  // One shared context per trust configuration instead of a new one per connection.
  opts.secureContext = sharedSecureContext(auth.kind === 'https_web' ? auth.caPem : undefined);
  if (auth.kind === 'https_web') {
    const session = tlsSessions.get(sessionKey(target, auth));
    if (session) opts.session = session;
    opts.rejectUnauthorized = true;
    // Checked against the URL's host even if an injected connect dials another address.
    opts.checkServerIdentity = (_name, cert) => tls.checkServerIdentity(host, cert);
  } else {
    opts.rejectUnauthorized = false;
    opts.checkServerIdentity = () => undefined;
  }
  return opts;
}

const CONTEXTS_MAX = 64;
const contexts = new Map<string, tls.SecureContext>();

/**
 * A client TLS context (TLS ≥ 1.2; the given CA certificates, or Node's default roots), built
 * once per CA set and reused by every connection: building one parses the CA file and allocates
 * an OpenSSL context, which per connection cost about a third of a fetch's CPU and kept tens of
 * MiB of freed native memory around after a burst of fetches (bench/scale.bench.ts). Contexts
 * are immutable once built; a changed CA file is a different key. Bounded: the oldest leaves.
 */
export function sharedSecureContext(caPem: string | undefined): tls.SecureContext {
  const key = caPem ?? '';
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = tls.createSecureContext({
      minVersion: MIN_TLS_VERSION,
      ...(caPem !== undefined ? { ca: caPem } : {}),
    });
    contexts.set(key, ctx);
    if (contexts.size > CONTEXTS_MAX) contexts.delete(contexts.keys().next().value!);
  }
  return ctx;
}

/**
 * TLS sessions of https_web endpoints, for resumption: a poll of a plain bundle endpoint then costs
 * an abbreviated handshake instead of a full one (the CPU of 1,000 polling peers is mostly
 * handshakes, bench/scale.bench.ts). Safe because an https_web session was established by a
 * handshake that verified the chain against this exact CA set and the URL's host (Federation
 * §5.2.1.4); OpenSSL keeps that verification result with the session, and the host name is
 * checked again on the resumed connection. The key holds the CA set's fingerprint, so a rotated
 * CA file never resumes a session verified under the old one. A session is dropped when the
 * connection it was offered on fails. https_spiffe never resumes: a resumed session carries no
 * certificate chain to verify, and its SPIFFE ID and chain are checked against the current bundle
 * on every connection (Federation §5.2.2.4). Bounded (least recently stored leave first).
 */
export class TlsSessionCache {
  #max = 16_384;
  readonly #map = new Map<string, Buffer>();
  get(key: string): Buffer | undefined {
    return this.#map.get(key);
  }
  set(key: string, session: Buffer): void {
    this.#map.delete(key);
    this.#map.set(key, session);
    while (this.#map.size > this.#max) this.#map.delete(this.#map.keys().next().value!);
  }
  delete(key: string): void {
    this.#map.delete(key);
  }
  /** Sessions held now. */
  get size(): number {
    return this.#map.size;
  }
  /** Most sessions kept (default 16,384: one per peer URL of a large fleet). */
  resize(max: number): void {
    this.#max = max;
    while (this.#map.size > max) this.#map.delete(this.#map.keys().next().value!);
  }
  clear(): void {
    this.#map.clear();
  }
}

/** The process's https_web session cache (see {@link TlsSessionCache}). */
export const tlsSessions = new TlsSessionCache();

/** The session cache key of an https_web endpoint under a CA set (undefined CA: the default roots). */
export function sessionKey(target: URL, auth: Extract<EndpointAuth, { kind: 'https_web' }>): string {
  const ca = auth.caPem === undefined ? 'default-roots' : caFingerprint(auth.caPem);
  return `${ca}|${hostOf(target)}|${target.port === '' ? 443 : target.port}`;
}

const fingerprints = new Map<string, string>();

/**
 * SHA-256 of a CA set's PEM, remembered per text (a poll asks for it up to three times: the pool
 * key, the session to offer, the session to keep). Bounded like the shared contexts.
 */
function caFingerprint(caPem: string): string {
  let fp = fingerprints.get(caPem);
  if (fp === undefined) {
    fp = createHash('sha256').update(caPem).digest('hex');
    fingerprints.set(caPem, fp);
    if (fingerprints.size > CONTEXTS_MAX) fingerprints.delete(fingerprints.keys().next().value!);
  }
  return fp;
}

/** The URL's host without IPv6 brackets. */
export function hostOf(target: URL): string {
  const h = target.hostname;
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/**
 * The certificate chain the server presented, leaf first, as DER — in the issuer order Node
 * reconstructs from what was sent. Empty when no certificate was presented.
 */
export function peerCertificateChain(socket: tls.TLSSocket): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<object>();
  let cert: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (cert && cert.raw !== undefined && !seen.has(cert) && out.length < 16) {
    seen.add(cert);
    out.push(new Uint8Array(cert.raw));
    const next: tls.DetailedPeerCertificate | undefined = cert.issuerCertificate;
    // A self-signed certificate is its own issuer: stop there.
    if (!next || next === cert || next.raw?.equals(cert.raw)) break;
    cert = next;
  }
  return out;
}

/**
 * The bundle that authenticates `endpointSpiffeId`: its trust domain's bundle from `bundles`.
 * @throws FetchError `ERR_FETCH_NO_BOOTSTRAP_BUNDLE` when none is held.
 */
export function endpointBundle(
  endpointSpiffeId: SpiffeId,
  bundles: BundleSource | TrustBundle,
  url: string,
): TrustBundle {
  const td = endpointSpiffeId.trustDomain;
  const bundle =
    'getBundleForTrustDomain' in bundles
      ? bundles.getBundleForTrustDomain(td)
      : bundles.trustDomain.equals(td)
        ? bundles
        : undefined;
  if (!bundle) {
    throw new FetchError(
      'ERR_FETCH_NO_BOOTSTRAP_BUNDLE',
      `${url}: cannot authenticate endpoint ${endpointSpiffeId.toString()}: no bundle is held for trust domain "${td.name}" (configure a bootstrap bundle, SPIFFE Federation §5.2.2.2)`,
    );
  }
  return bundle;
}

/**
 * https_spiffe server authentication (SPIFFE Federation §5.2.2.4): the presented chain must be a
 * valid X509-SVID (X509-SVID §5) chaining to `bundle` — the endpoint ID's trust domain's bundle,
 * and only that one — and carry exactly `endpointSpiffeId`.
 *
 * @throws FetchError `ERR_FETCH_ENDPOINT_ID` for a valid SVID of another ID, or one from another
 *   trust domain; `ERR_FETCH_TLS` (with the verification code) for anything else.
 */
export function authenticateSpiffeServer(
  chain: readonly Uint8Array[],
  endpointSpiffeId: SpiffeId,
  bundle: TrustBundle,
  now: number,
  url: string,
): void {
  const expected = endpointSpiffeId.toString();
  if (chain.length === 0) {
    throw new FetchError(
      'ERR_FETCH_TLS',
      `${url}: the server presented no certificate (expected an X509-SVID for ${expected})`,
    );
  }
  // Only the endpoint's own trust domain can vouch for it: a source holding just that bundle.
  const only = {
    getBundleForTrustDomain: (td: { name: string }) =>
      td.name === bundle.trustDomain.name ? bundle : undefined,
  };
  const r = verifyX509Svid(chain, only, { now, authorize: matchId(endpointSpiffeId) });
  if (r.ok) return;
  if (r.code === 'ERR_VERIFY_ID_NOT_AUTHORIZED' || r.code === 'ERR_VERIFY_NO_BUNDLE') {
    throw new FetchError(
      'ERR_FETCH_ENDPOINT_ID',
      `${url}: the server is not ${expected}: ${r.message} (${r.code})`,
    );
  }
  throw new FetchError(
    'ERR_FETCH_TLS',
    `${url}: the server certificate is not a valid X509-SVID of trust domain "${bundle.trustDomain.name}": ${r.message} (${r.code})`,
  );
}
