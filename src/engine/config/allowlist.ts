import { createHash } from 'node:crypto';
import { issuerProblem } from '../../core/bundle/oidc.js';
import { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { parseListenAddress } from './broker-config.js';
import { ConfigValidationError } from './config-error.js';
import { readHeader } from './header.js';
import type { Allowlist, EndpointProfileConfig, KeyPolicyConfig, PeerConfig } from './types.js';
import { type Field, loadYaml, type MapView, type YamlReader } from './yaml-reader.js';

/** Default clamp of a peer's poll interval, seconds (FEDERATION_REFRESH_POLICY uses the same). */
export const DEFAULT_REFRESH_MIN_SECONDS = 1;
export const DEFAULT_REFRESH_MAX_SECONDS = 300;

/** Bounds accepted for `refresh.minInterval` / `refresh.maxInterval`: 100 ms to one day. */
const REFRESH_BOUNDS_MS = [100, 86_400_000] as const;

/** JWK key types a key policy may allow. */
export const KEY_TYPES = ['EC', 'RSA', 'OKP'] as const;
/** Curves a key policy may allow (JOSE names). */
export const CURVES = ['P-256', 'P-384', 'P-521', 'Ed25519', 'Ed448'] as const;

const PEER_KEYS = [
  'trustDomain',
  'bundleEndpoint',
  'refresh',
  'keyPolicy',
  'spireServers',
  'allowEmptyBundle',
  'probe',
  'relay',
  'oidcIssuer',
] as const;
const ENDPOINT_KEYS = ['urls', 'profile', 'caFile', 'endpointSPIFFEID', 'bootstrapBundleFile'] as const;
const KEY_POLICY_KEYS = [
  'maxKeys',
  'allowedKeyTypes',
  'allowedCurves',
  'minRSABits',
  'maxBundleBytes',
] as const;

/** Bounds accepted for `keyPolicy.maxBundleBytes`: 1 KiB to 16 MiB. */
const MAX_BUNDLE_BYTES_BOUNDS = [1024, 16 * 1024 * 1024] as const;

/** Bounds accepted for `refresh.maxHint`: one minute (SPIRE's hint floor) to 30 days. */
const MAX_HINT_BOUNDS_MS = [60_000, 30 * 86_400_000] as const;

/** Context an allowlist is validated against. */
export interface AllowlistParseOptions {
  /** The broker's own trust domain: refused as a peer (never federate with yourself). */
  readonly localTrustDomain?: TrustDomain | string;
  /** Names of the configured SPIRE servers; `spireServers` entries must be among them. */
  readonly serverNames?: readonly string[];
}

/**
 * Parses and validates an allowlist (`apiVersion: spiffe-broker.dev/v1`, `kind: Allowlist`).
 * Pure: text in, typed {@link Allowlist} out. Every problem is collected with its line and column.
 *
 * Rules enforced (docs/configuration.md has the full reference):
 * - `trustDomain` is explicit and required; never inferred from a URL (SPIFFE Federation §7.2, B15).
 * - the local trust domain is refused (`ERR_CONFIG_LOCAL_TRUST_DOMAIN`), duplicates are refused
 *   (`ERR_CONFIG_DUPLICATE_PEER`).
 * - URLs are `https://` with a host and no userinfo (Federation §5.2.1.1 / §5.2.2.1, W1/S1).
 * - the profile is explicit and its parameters must match it (never mixed, §7.2).
 * - unknown keys are refused: a typo must not silently drop a setting.
 *
 * @example
 * const allowlist = parseAllowlist(text, { localTrustDomain: 'example.org', serverNames: ['main'] });
 * for (const peer of allowlist.peers) console.log(peer.trustDomain.name, peer.urls[0]?.href);
 * @throws ConfigValidationError (a ConfigError) listing every issue.
 */
export function parseAllowlist(text: string, options: AllowlistParseOptions = {}): Allowlist {
  const { reader, root } = loadYaml(text);
  const local =
    typeof options.localTrustDomain === 'string'
      ? TrustDomain.parse(options.localTrustDomain)
      : options.localTrustDomain;
  const peers: PeerConfig[] = [];
  if (reader.issues.length === 0) {
    const top = readHeader(reader, root, 'Allowlist', ['peers']);
    const peersField = top?.require('peers');
    const items = peersField ? reader.seq(peersField, 'a list of peers (may be empty: [])') : undefined;
    const seen = new Map<string, number>();
    const pendingEndpointChecks: { field: Field; peer: PeerConfig; endpointTd: TrustDomain }[] = [];
    for (const item of items ?? []) {
      const { peer, trustDomain, tdField } = readPeer(reader, item, options, pendingEndpointChecks);
      if (!trustDomain || !tdField) continue;
      const name = trustDomain.name;
      if (local && local.name === name) {
        reader.report(
          tdField,
          `${name} is the local trust domain: a trust domain never federates with itself`,
          'ERR_CONFIG_LOCAL_TRUST_DOMAIN',
        );
        continue;
      }
      const firstLine = seen.get(name);
      if (firstLine !== undefined) {
        reader.report(
          tdField,
          `trust domain ${name} is already listed on line ${firstLine}`,
          'ERR_CONFIG_DUPLICATE_PEER',
        );
        continue;
      }
      seen.set(name, reader.lineOf(item));
      if (peer) peers.push(peer);
    }
    // https_spiffe with a non-self-serving endpoint and no bootstrap file: the endpoint's trust
    // domain bundle must come from another relationship (Federation §5.2.2.2, S4). The local trust
    // domain's bundle is not one the broker fetches or holds as a peer bundle, so an endpoint ID in
    // the local trust domain needs bootstrapBundleFile too: without it every fetch would fail with
    // ERR_FETCH_NO_BOOTSTRAP_BUNDLE, so it is refused here, at load.
    for (const { field, endpointTd } of pendingEndpointChecks) {
      if (local !== undefined && local.name === endpointTd.name) {
        reader.report(
          field,
          `the endpoint's SPIFFE ID is in the local trust domain ${endpointTd.name}, whose bundle the broker does not use to authenticate peers: set bootstrapBundleFile to the local bundle (spire-server bundle show -format spiffe) (SPIFFE Federation §5.2.2.2)`,
          'ERR_CONFIG_PROFILE',
        );
        continue;
      }
      if (seen.has(endpointTd.name) || local === undefined) continue;
      reader.report(
        field,
        `the endpoint's trust domain ${endpointTd.name} is neither local nor an allowlisted peer: set bootstrapBundleFile to its bundle (SPIFFE Federation §5.2.2.2)`,
        'ERR_CONFIG_PROFILE',
      );
    }
  }
  if (reader.issues.length > 0) throw new ConfigValidationError('allowlist', reader.issues);
  return Object.freeze({
    peers: Object.freeze(peers),
    version: createHash('sha256').update(text, 'utf8').digest('hex'),
  });
}

function readPeer(
  reader: YamlReader,
  item: Field,
  options: AllowlistParseOptions,
  pending: { field: Field; peer: PeerConfig; endpointTd: TrustDomain }[],
): { peer?: PeerConfig; trustDomain?: TrustDomain; tdField?: Field } {
  const m = reader.map(item, PEER_KEYS, 'a peer mapping (trustDomain, bundleEndpoint, ...)');
  if (!m) return {};
  const before = reader.issues.length;
  const tdField = m.require('trustDomain');
  const trustDomain = readTrustDomain(reader, tdField);
  const named = trustDomain && tdField ? { trustDomain, tdField } : {};
  const ep = m.require('bundleEndpoint');
  const endpoint = ep ? readEndpoint(reader, ep, trustDomain) : undefined;
  const refresh = readRefresh(reader, m.get('refresh'));
  const keyPolicy = readKeyPolicy(reader, m.get('keyPolicy'));
  const targetServers = readServers(reader, m.get('spireServers'), options.serverNames);
  const aeb = m.get('allowEmptyBundle');
  const allowEmptyBundle = aeb && !reader.isNull(aeb) ? reader.boolean(aeb) : false;
  const probeField = m.get('probe');
  const probe = probeField && !reader.isNull(probeField) ? readProbe(reader, probeField) : null;
  const relayField = m.get('relay');
  const relay = relayField && !reader.isNull(relayField) ? reader.boolean(relayField) : false;
  const oiField = m.get('oidcIssuer');
  const oidcIssuer =
    oiField && !reader.isNull(oiField)
      ? reader.string(oiField, 'the https issuer of the peer JWT-SVIDs')
      : undefined;
  if (oiField && oidcIssuer !== undefined) {
    const problem = issuerProblem(oidcIssuer);
    if (problem) reader.report(oiField, `oidcIssuer ${problem}`, 'ERR_CONFIG_URL');
  }
  if (
    probe === undefined ||
    relay === undefined ||
    reader.issues.length > before ||
    !trustDomain ||
    !endpoint ||
    !refresh ||
    !keyPolicy ||
    !targetServers ||
    allowEmptyBundle === undefined
  ) {
    return named;
  }
  const peer: PeerConfig = Object.freeze({
    trustDomain,
    urls: Object.freeze(endpoint.urls),
    profile: endpoint.profile,
    refresh,
    keyPolicy,
    targetServers,
    allowEmptyBundle,
    ...(probe ? { probe } : {}),
    ...(relay ? { relay } : {}),
    ...(oidcIssuer !== undefined ? { oidcIssuer } : {}),
    line: reader.lineOf(item),
  });
  if (endpoint.needsEndpointTdCheck) {
    pending.push({
      field: endpoint.needsEndpointTdCheck.field,
      peer,
      endpointTd: endpoint.needsEndpointTdCheck.td,
    });
  }
  return { ...named, peer };
}

function readTrustDomain(reader: YamlReader, f: Field | undefined): TrustDomain | undefined {
  if (!f) return undefined;
  const name = reader.string(f, 'a trust domain name such as example.org');
  if (name === undefined) return undefined;
  if (name.startsWith('spiffe://')) {
    reader.report(
      f,
      `write the bare trust domain name (${name.slice(9).split('/')[0]}), not a SPIFFE ID`,
      'ERR_CONFIG_TRUST_DOMAIN',
    );
    return undefined;
  }
  try {
    return TrustDomain.parse(name);
  } catch (err) {
    reader.report(f, `invalid trust domain: ${(err as Error).message}`, 'ERR_CONFIG_TRUST_DOMAIN');
    return undefined;
  }
}

/**
 * Checks a bundle endpoint URL: `https` only, a host, no userinfo (SPIFFE Federation §5.2.1.1 for
 * https_web and §5.2.2.1 for https_spiffe — requirements W1/S1). Returns the reason when invalid.
 */
export function endpointUrlProblem(raw: string): string | undefined {
  if (/^http:\/\//i.test(raw)) {
    return 'http:// is refused: bundle endpoint URLs must use https (SPIFFE Federation §5.2.1.1)';
  }
  if (!/^https:\/\/[^/?#]/i.test(raw)) return 'must be an https:// URL with a host';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a valid URL';
  }
  if (url.protocol !== 'https:') return 'must be an https:// URL';
  if (url.hostname === '') return 'must have a host';
  // The authority must not carry userinfo, even an empty one ("https://@host").
  const authority = raw.slice('https://'.length).split(/[/?#]/, 1)[0] ?? '';
  if (url.username !== '' || url.password !== '' || authority.includes('@')) {
    return 'must not contain userinfo (SPIFFE Federation §5.2.1.1)';
  }
  return undefined;
}

interface EndpointRead {
  readonly urls: URL[];
  readonly profile: EndpointProfileConfig;
  readonly needsEndpointTdCheck?: { field: Field; td: TrustDomain };
}

function readEndpoint(
  reader: YamlReader,
  f: Field,
  peerTd: TrustDomain | undefined,
): EndpointRead | undefined {
  const m = reader.map(f, ENDPOINT_KEYS, 'a bundleEndpoint mapping (urls, profile, ...)');
  if (!m) return undefined;
  const before = reader.issues.length;
  const urls: URL[] = [];
  const urlsField = m.require('urls');
  const urlItems = urlsField ? reader.seq(urlsField, 'a list of one or more https URLs') : undefined;
  if (urlsField && urlItems?.length === 0) reader.report(urlsField, 'needs at least one URL');
  const seenUrls = new Set<string>();
  for (const u of urlItems ?? []) {
    const raw = reader.string(u, 'an https URL');
    if (raw === undefined) continue;
    const problem = endpointUrlProblem(raw);
    if (problem) {
      reader.report(u, problem, 'ERR_CONFIG_URL');
      continue;
    }
    const url = new URL(raw);
    if (seenUrls.has(url.href)) {
      reader.report(u, `${url.href} is listed twice`, 'ERR_CONFIG_URL');
      continue;
    }
    seenUrls.add(url.href);
    urls.push(url);
  }
  const profileField = m.require('profile');
  const kind = profileField ? reader.oneOf(profileField, ['https_web', 'https_spiffe'] as const) : undefined;
  let profile: EndpointProfileConfig | undefined;
  let needsEndpointTdCheck: { field: Field; td: TrustDomain } | undefined;
  // The profile is configured explicitly and its parameters must belong to it: never inferred
  // from the URL, never mixed or fallen back from (SPIFFE Federation §7.2, B15).
  if (kind === 'https_web') {
    for (const k of ['endpointSPIFFEID', 'bootstrapBundleFile']) {
      const g = m.get(k);
      if (g) reader.report(g, `${k} is only valid with profile https_spiffe`, 'ERR_CONFIG_PROFILE');
    }
    const ca = m.get('caFile');
    const caFile = ca && !reader.isNull(ca) ? reader.string(ca, 'a PEM file path') : undefined;
    profile = caFile === undefined ? { kind } : { kind, caFile };
  } else if (kind === 'https_spiffe') {
    const ca = m.get('caFile');
    if (ca) {
      reader.report(
        ca,
        'caFile is only valid with profile https_web (https_spiffe authenticates with the SPIFFE bundle)',
        'ERR_CONFIG_PROFILE',
      );
    }
    const idField = m.get('endpointSPIFFEID');
    let id: SpiffeId | undefined;
    if (!idField || reader.isNull(idField)) {
      reader.report(
        idField ?? f,
        'https_spiffe needs endpointSPIFFEID, the SPIFFE ID the endpoint server must present (SPIFFE Federation §5.2.2.2)',
        'ERR_CONFIG_PROFILE',
      );
    } else {
      const raw = reader.string(idField, 'a SPIFFE ID');
      if (raw !== undefined) {
        try {
          id = SpiffeId.parse(raw);
        } catch (err) {
          reader.report(
            idField,
            `invalid endpoint SPIFFE ID: ${(err as Error).message}`,
            'ERR_CONFIG_PROFILE',
          );
        }
      }
    }
    const bb = m.get('bootstrapBundleFile');
    const bootstrap = bb && !reader.isNull(bb) ? reader.string(bb, 'a SPIFFE bundle file path') : undefined;
    if (id) {
      const selfServing = peerTd !== undefined && id.memberOf(peerTd);
      if (bootstrap === undefined && selfServing) {
        reader.report(
          idField!,
          'a self-serving https_spiffe endpoint needs bootstrapBundleFile to authenticate the first fetch (SPIFFE Federation §5.2.2.2)',
          'ERR_CONFIG_PROFILE',
        );
      } else if (bootstrap === undefined && !selfServing) {
        needsEndpointTdCheck = { field: idField!, td: id.trustDomain };
      }
      profile =
        bootstrap === undefined
          ? { kind, endpointSpiffeId: id }
          : { kind, endpointSpiffeId: id, bootstrapBundleFile: bootstrap };
    }
  }
  if (reader.issues.length > before || !profile) return undefined;
  return needsEndpointTdCheck ? { urls, profile, needsEndpointTdCheck } : { urls, profile };
}

/** `probe: { address: host:port, spiffeId? }`: the peer broker's cross-domain mTLS probe port. */
function readProbe(reader: YamlReader, f: Field): PeerConfig['probe'] | undefined {
  const m = reader.map(f, ['address', 'spiffeId'], 'a probe mapping (address, spiffeId)');
  if (!m) return undefined;
  const aF = m.require('address');
  const text = aF ? reader.string(aF, 'host:port') : undefined;
  if (text === undefined) return undefined;
  const addr = parseListenAddress(text);
  if (typeof addr === 'string') {
    reader.report(aF!, addr, 'ERR_CONFIG_ADDRESS');
    return undefined;
  }
  const idF = m.get('spiffeId');
  let expectedId: SpiffeId | undefined;
  if (idF && !reader.isNull(idF)) {
    const v = reader.string(idF, 'a SPIFFE ID');
    if (v === undefined) return undefined;
    const id = SpiffeId.tryParse(v);
    if (!id) {
      reader.report(idF, `${JSON.stringify(v)} is not a SPIFFE ID`, 'ERR_CONFIG_SCHEMA');
      return undefined;
    }
    expectedId = id;
  }
  return { host: addr.host, port: addr.port, ...(expectedId ? { expectedId } : {}) };
}

function readRefresh(reader: YamlReader, f: Field | undefined): PeerConfig['refresh'] | undefined {
  const defaults = {
    minIntervalSeconds: DEFAULT_REFRESH_MIN_SECONDS,
    maxIntervalSeconds: DEFAULT_REFRESH_MAX_SECONDS,
  };
  if (!f || reader.isNull(f)) return defaults;
  const m = reader.map(
    f,
    ['minInterval', 'maxInterval', 'maxHint'],
    'a mapping (minInterval, maxInterval, maxHint)',
  );
  if (!m) return undefined;
  const hintF = m.get('maxHint');
  let maxHintSeconds: number | undefined;
  if (hintF && !reader.isNull(hintF)) {
    const ms = reader.duration(hintF, MAX_HINT_BOUNDS_MS[0], MAX_HINT_BOUNDS_MS[1]);
    if (ms === undefined) return undefined;
    if (ms % 1000 !== 0) {
      reader.report(hintF, 'maxHint is compared with refresh hints, which are whole seconds');
      return undefined;
    }
    maxHintSeconds = ms / 1000;
  }
  const [lo, hi] = REFRESH_BOUNDS_MS;
  const minF = m.get('minInterval');
  const maxF = m.get('maxInterval');
  const minMs =
    minF && !reader.isNull(minF) ? reader.duration(minF, lo, hi) : defaults.minIntervalSeconds * 1000;
  const maxMs =
    maxF && !reader.isNull(maxF) ? reader.duration(maxF, lo, hi) : defaults.maxIntervalSeconds * 1000;
  if (minMs === undefined || maxMs === undefined) return undefined;
  if (minMs > maxMs) {
    reader.report(
      maxF ?? minF ?? f,
      `minInterval (${minMs / 1000}s) is greater than maxInterval (${maxMs / 1000}s)`,
    );
    return undefined;
  }
  return {
    minIntervalSeconds: minMs / 1000,
    maxIntervalSeconds: maxMs / 1000,
    ...(maxHintSeconds !== undefined ? { maxHintSeconds } : {}),
  };
}

function readKeyPolicy(reader: YamlReader, f: Field | undefined): KeyPolicyConfig | undefined {
  if (!f || reader.isNull(f)) return Object.freeze({});
  const m = reader.map(f, KEY_POLICY_KEYS, 'a keyPolicy mapping');
  if (!m) return undefined;
  const before = reader.issues.length;
  const out: {
    maxKeys?: number;
    allowedKeyTypes?: readonly ('EC' | 'RSA' | 'OKP')[];
    allowedCurves?: readonly string[];
    minRsaBits?: number;
    maxBundleBytes?: number;
  } = {};
  const mk = present(reader, m, 'maxKeys');
  if (mk) {
    const v = reader.integer(mk, 1, 10_000);
    if (v !== undefined) out.maxKeys = v;
  }
  const kt = present(reader, m, 'allowedKeyTypes');
  if (kt) {
    const v = readEnumList(reader, kt, KEY_TYPES);
    if (v) out.allowedKeyTypes = v;
  }
  const cv = present(reader, m, 'allowedCurves');
  if (cv) {
    const v = readEnumList(reader, cv, CURVES);
    if (v) out.allowedCurves = v;
  }
  const rb = present(reader, m, 'minRSABits');
  if (rb) {
    const v = reader.integer(rb, 1024, 16_384);
    if (v !== undefined) out.minRsaBits = v;
  }
  const bb = present(reader, m, 'maxBundleBytes');
  if (bb) {
    const v = reader.integer(bb, MAX_BUNDLE_BYTES_BOUNDS[0], MAX_BUNDLE_BYTES_BOUNDS[1]);
    if (v !== undefined) out.maxBundleBytes = v;
  }
  return reader.issues.length > before ? undefined : Object.freeze(out);
}

function present(reader: YamlReader, m: MapView, key: string): Field | undefined {
  const f = m.get(key);
  return f && !reader.isNull(f) ? f : undefined;
}

function readEnumList<T extends string>(reader: YamlReader, f: Field, values: readonly T[]): T[] | undefined {
  const items = reader.seq(f, `a non-empty list of ${values.join(', ')}`);
  if (!items) return undefined;
  if (items.length === 0) {
    reader.report(f, `must list at least one of ${values.join(', ')}`);
    return undefined;
  }
  const out: T[] = [];
  let ok = true;
  for (const it of items) {
    const v = reader.oneOf(it, values);
    if (v === undefined) ok = false;
    else if (out.includes(v)) {
      reader.report(it, `${v} is listed twice`);
      ok = false;
    } else out.push(v);
  }
  return ok ? out : undefined;
}

function readServers(
  reader: YamlReader,
  f: Field | undefined,
  known: readonly string[] | undefined,
): 'all' | readonly string[] | undefined {
  if (!f || reader.isNull(f)) return 'all';
  if (f.node && 'value' in f.node && f.node.value === 'all') return 'all';
  const items = reader.seq(f, 'a list of SPIRE server names, or "all"');
  if (!items) return undefined;
  if (items.length === 0) {
    reader.report(f, 'must name at least one SPIRE server (omit it, or write "all", for every server)');
    return undefined;
  }
  const out: string[] = [];
  let ok = true;
  for (const it of items) {
    const name = reader.string(it, 'a SPIRE server name');
    if (name === undefined) {
      ok = false;
    } else if (out.includes(name)) {
      reader.report(it, `${name} is listed twice`);
      ok = false;
    } else if (known && !known.includes(name)) {
      reader.report(
        it,
        `no SPIRE server named ${JSON.stringify(name)} in the broker config (known: ${known.join(', ') || 'none'})`,
        'ERR_CONFIG_UNKNOWN_SERVER',
      );
      ok = false;
    } else {
      out.push(name);
    }
  }
  return ok ? Object.freeze(out) : undefined;
}
