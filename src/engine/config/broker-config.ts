import { isMap } from 'yaml';
import { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { ConfigValidationError } from './config-error.js';
import { readHeader } from './header.js';
import { readOidc } from './oidc-config.js';
import { readOutputs } from './outputs-config.js';
import type {
  AdminConfig,
  AuditConfig,
  BrokerConfig,
  BundleEndpointConfig,
  FetchConfig,
  ListenAddress,
  ProbeConfig,
  ReconcileConfig,
  SpireServerConfig,
  VerifyApiConfig,
} from './types.js';
import { type Field, loadYaml, type MapView, type YamlReader } from './yaml-reader.js';

/** Defaults filled in by {@link parseBrokerConfig}; documented in docs/configuration.md. */
export const BROKER_DEFAULTS = Object.freeze({
  spireTimeoutMs: 10_000,
  endpointRefreshHintSeconds: 300,
  endpointPollIntervalMs: 250,
  endpointMaxHeldRequests: 10_000,
  /** 10 s: a TLS handshake takes milliseconds; Node's 120 s lets silent connections fill the cap. */
  endpointHandshakeTimeoutMs: 10_000,
  endpointMaxConnectionsPerAddress: 256,
  endpointSpiffeIdPath: '/spiffe-broker',
  adminListen: '127.0.0.1:8089',
  verifyListen: '127.0.0.1:8090',
  /** 64 KiB: an X509-SVID chain or a JWT-SVID is a few KiB at most. */
  verifyMaxBodyBytes: 65_536,
  fetchConnectTimeoutMs: 5_000,
  fetchTimeoutMs: 30_000,
  /** 1 MiB: the bundle parser's own default limit. */
  fetchMaxBodyBytes: 1_048_576,
  /** 10 minutes: a 300 s refresh hint polls every 75 s; an hour's hint every 15 minutes pays a handshake. */
  fetchKeepAliveIdleTimeoutMs: 600_000,
  /** One per allowlisted peer, at least 1,024; ~40 KiB of native TLS memory each (docs/scaling.md). */
  fetchKeepAliveMaxIdle: 'auto' as const,
  probeIntervalMs: 10_000,
  auditFileName: 'audit.log',
  auditKeyFileName: 'audit-key.pem',
});

const DAY_MS = 86_400_000;
const SERVER_NAME = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;

const TOP_KEYS = [
  'trustDomain',
  'stateDir',
  'spire',
  'allowlist',
  'endpoint',
  'admin',
  'verify',
  'fetch',
  'reconcile',
  'audit',
  'probe',
  'mtlsProbe',
  'kubernetes',
  'oidc',
  'outputs',
] as const;

/**
 * Parses and validates the broker's own configuration (`kind: BrokerConfig`), filling defaults.
 * Pure: text in, typed {@link BrokerConfig} out; every problem is collected with line and column.
 *
 * @example
 * const config = parseBrokerConfig(await readFile('/etc/spiffe-broker/broker.yaml', 'utf8'));
 * const allowlist = parseAllowlist(await readFile(config.allowlist.file, 'utf8'), {
 *   localTrustDomain: config.trustDomain,
 *   serverNames: config.spire.servers.map((s) => s.name),
 * });
 * @throws ConfigValidationError (a ConfigError) listing every issue.
 */
export function parseBrokerConfig(text: string): BrokerConfig {
  const { reader, root } = loadYaml(text);
  let config: BrokerConfig | undefined;
  if (reader.issues.length === 0) {
    const top = readHeader(reader, root, 'BrokerConfig', TOP_KEYS);
    if (top) config = readBody(reader, top);
  }
  if (reader.issues.length > 0 || !config) {
    throw new ConfigValidationError('broker config', reader.issues);
  }
  return config;
}

function readBody(reader: YamlReader, top: MapView): BrokerConfig | undefined {
  const tdF = top.require('trustDomain');
  const tdName = tdF ? reader.string(tdF, 'a trust domain name such as example.org') : undefined;
  let trustDomain: TrustDomain | undefined;
  if (tdF && tdName !== undefined) {
    try {
      trustDomain = TrustDomain.parse(tdName);
    } catch (err) {
      reader.report(tdF, `invalid trust domain: ${(err as Error).message}`, 'ERR_CONFIG_TRUST_DOMAIN');
    }
  }
  const sdF = top.require('stateDir');
  const stateDir = sdF ? reader.string(sdF, 'a directory path') : undefined;
  const spireF = top.require('spire');
  const spire = spireF ? readSpire(reader, spireF) : undefined;
  const alF = top.require('allowlist');
  const alM = alF ? reader.map(alF, ['file'], 'a mapping with "file"') : undefined;
  const alFile = alM?.require('file');
  const allowlistFile = alFile ? reader.string(alFile, 'a file path') : undefined;
  const endpointF = opt(reader, top, 'endpoint');
  const endpoint = endpointF ? readEndpoint(reader, endpointF, trustDomain) : undefined;
  const admin = readAdmin(reader, opt(reader, top, 'admin'));
  const verify = readVerify(reader, opt(reader, top, 'verify'));
  const fetch = readFetch(reader, opt(reader, top, 'fetch'));
  const reconcile = readReconcile(reader, opt(reader, top, 'reconcile'));
  const audit = stateDir === undefined ? undefined : readAudit(reader, opt(reader, top, 'audit'), stateDir);
  const probe = readProbe(reader, opt(reader, top, 'probe'));
  const mtlsProbe = readProbe(reader, opt(reader, top, 'mtlsProbe'));
  const oidcF = opt(reader, top, 'oidc');
  const oidc = oidcF ? readOidc(reader, oidcF, { parseListenAddress, isLoopbackHost }) : undefined;
  const outputsF = opt(reader, top, 'outputs');
  const outputs = outputsF ? readOutputs(reader, outputsF, stateDir) : undefined;
  const k8sF = opt(reader, top, 'kubernetes');
  let kubernetes: Record<string, unknown> | undefined;
  if (k8sF) {
    if (k8sF.node && isMap(k8sF.node)) kubernetes = k8sF.node.toJSON() as Record<string, unknown>;
    else reader.report(k8sF, 'must be a mapping');
  }
  if (
    !trustDomain ||
    stateDir === undefined ||
    !spire ||
    allowlistFile === undefined ||
    (endpointF && !endpoint) ||
    (oidcF && !oidc) ||
    (outputsF && !outputs) ||
    !admin ||
    !verify ||
    !fetch ||
    !reconcile ||
    !audit ||
    !probe ||
    !mtlsProbe
  ) {
    return undefined;
  }
  const config: {
    -readonly [K in keyof BrokerConfig]: BrokerConfig[K];
  } = {
    trustDomain,
    stateDir,
    spire,
    allowlist: { file: allowlistFile },
    admin,
    verify,
    fetch,
    reconcile,
    audit,
    probe,
    mtlsProbe,
  };
  if (endpoint) {
    config.endpoint = endpoint.spiffeId
      ? endpoint
      : endpoint.profile === 'https_spiffe'
        ? { ...endpoint, spiffeId: SpiffeId.fromPath(trustDomain, BROKER_DEFAULTS.endpointSpiffeIdPath) }
        : endpoint;
  }
  if (oidc) config.oidc = oidc;
  if (kubernetes) config.kubernetes = kubernetes;
  if (outputs) config.outputs = outputs;
  return config;
}

/** A present, non-null optional field. */
function opt(reader: YamlReader, m: MapView, key: string): Field | undefined {
  const f = m.get(key);
  return f && !reader.isNull(f) ? f : undefined;
}

/** Parses `host:port` (`[v6]:port` for IPv6). Returns the problem when invalid. */
export function parseListenAddress(value: string): ListenAddress | string {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value);
  if (!m) return `${JSON.stringify(value)} is not host:port (IPv6 as [::1]:8443)`;
  const port = Number(m[3]);
  if (port > 65_535) return `port ${port} is out of range`;
  return { host: m[1] ?? m[2]!, port };
}

/** True for `localhost`, 127.0.0.0/8 and ::1. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Checks a SPIRE server address: `unix:///absolute/path` or `dns:///host:port` (the gRPC target
 * forms SPIRE's own CLI uses). Returns the problem when invalid.
 */
export function spireAddressProblem(value: string): string | undefined {
  if (value.startsWith('unix://')) {
    const path = value.slice('unix://'.length);
    return path.startsWith('/') && path.length > 1
      ? undefined
      : 'a unix address needs an absolute path: unix:///run/spire/server/private/api.sock';
  }
  if (value.startsWith('dns:///')) {
    const hp = parseListenAddress(value.slice('dns:///'.length));
    if (typeof hp === 'string') return `dns address: ${hp}`;
    return hp.port === 0 ? 'dns address needs a non-zero port' : undefined;
  }
  return 'must be unix:///absolute/path.sock or dns:///host:port';
}

function listen(reader: YamlReader, f: Field): ListenAddress | undefined {
  const raw = reader.string(f, 'host:port');
  if (raw === undefined) return undefined;
  const r = parseListenAddress(raw);
  if (typeof r === 'string') {
    reader.report(f, r, 'ERR_CONFIG_ADDRESS');
    return undefined;
  }
  return r;
}

function defaultListen(value: string): ListenAddress {
  const r = parseListenAddress(value);
  if (typeof r === 'string') throw new TypeError(r);
  return r;
}

function readSpire(reader: YamlReader, f: Field): BrokerConfig['spire'] | undefined {
  const m = reader.map(f, ['servers', 'source'], 'a mapping (servers, source)');
  if (!m) return undefined;
  const before = reader.issues.length;
  const serversF = m.require('servers');
  const items = serversF ? reader.seq(serversF, 'a list of SPIRE servers') : undefined;
  if (serversF && items?.length === 0) reader.report(serversF, 'needs at least one SPIRE server');
  const servers: SpireServerConfig[] = [];
  const names = new Set<string>();
  for (const it of items ?? []) {
    const { name, server } = readSpireServer(reader, it);
    if (name === undefined) continue;
    if (names.has(name)) {
      reader.report(it, `SPIRE server name ${JSON.stringify(name)} is used twice`);
      continue;
    }
    names.add(name);
    if (server) servers.push(server);
  }
  const srcF = opt(reader, m, 'source');
  let source: string | undefined;
  if (srcF) {
    source = reader.string(srcF, 'a SPIRE server name');
    if (source !== undefined && items && !names.has(source)) {
      reader.report(srcF, `no SPIRE server named ${JSON.stringify(source)}`, 'ERR_CONFIG_UNKNOWN_SERVER');
    }
  } else if (servers.length === 1) {
    source = servers[0]!.name;
  } else if (servers.length > 1) {
    reader.report(f, 'spire.source must name the server whose bundle is published when there are several');
  }
  if (reader.issues.length > before || source === undefined) return undefined;
  return { servers: Object.freeze(servers), source };
}

function readSpireServer(reader: YamlReader, f: Field): { name?: string; server?: SpireServerConfig } {
  const m = reader.map(f, [
    'name',
    'address',
    'adminCertFile',
    'adminKeyFile',
    'serverBundleFile',
    'timeout',
  ]);
  if (!m) return {};
  const before = reader.issues.length;
  const nameF = m.require('name');
  const name = nameF ? reader.string(nameF) : undefined;
  if (nameF && name !== undefined && !SERVER_NAME.test(name)) {
    reader.report(nameF, 'must be lower-case letters, digits, ".", "-" or "_" (at most 63)');
  }
  const addrF = m.require('address');
  const address = addrF ? reader.string(addrF, 'unix:///path or dns:///host:port') : undefined;
  if (addrF && address !== undefined) {
    const p = spireAddressProblem(address);
    if (p) reader.report(addrF, p, 'ERR_CONFIG_ADDRESS');
  }
  const files: Partial<Record<'adminCertFile' | 'adminKeyFile' | 'serverBundleFile', string>> = {};
  for (const k of ['adminCertFile', 'adminKeyFile', 'serverBundleFile'] as const) {
    const ff = opt(reader, m, k);
    const v = ff ? reader.string(ff, 'a file path') : undefined;
    if (v !== undefined) files[k] = v;
  }
  if ((files.adminCertFile === undefined) !== (files.adminKeyFile === undefined)) {
    reader.report(f, 'adminCertFile and adminKeyFile go together');
  }
  if (
    address?.startsWith('dns:///') &&
    (files.adminCertFile === undefined ||
      files.adminKeyFile === undefined ||
      files.serverBundleFile === undefined)
  ) {
    reader.report(
      addrF!,
      'a TCP (dns:///) SPIRE address needs adminCertFile, adminKeyFile and serverBundleFile for mTLS',
      'ERR_CONFIG_ADDRESS',
    );
  }
  const tF = opt(reader, m, 'timeout');
  const timeoutMs = tF ? reader.duration(tF, 100, 10 * 60_000) : BROKER_DEFAULTS.spireTimeoutMs;
  if (
    reader.issues.length > before ||
    name === undefined ||
    address === undefined ||
    timeoutMs === undefined
  ) {
    return name === undefined ? {} : { name };
  }
  return { name, server: { name, address, ...files, timeoutMs } };
}

const ENDPOINT_KEYS = [
  'listen',
  'profile',
  'certFile',
  'keyFile',
  'spiffeId',
  'workloadApiSocket',
  'refreshHint',
  'pollInterval',
  'bundleMapPath',
  'serveFederatedInMap',
  'maxHeldRequests',
  'handshakeTimeout',
  'maxConnectionsPerAddress',
] as const;

function readEndpoint(
  reader: YamlReader,
  f: Field,
  td: TrustDomain | undefined,
): BundleEndpointConfig | undefined {
  const m = reader.map(f, ENDPOINT_KEYS);
  if (!m) return undefined;
  const before = reader.issues.length;
  const lF = m.require('listen');
  const addr = lF ? listen(reader, lF) : undefined;
  const pF = m.require('profile');
  const profile = pF ? reader.oneOf(pF, ['https_web', 'https_spiffe'] as const) : undefined;
  const str = (k: string): string | undefined => {
    const ff = opt(reader, m, k);
    return ff ? reader.string(ff) : undefined;
  };
  const certFile = str('certFile');
  const keyFile = str('keyFile');
  const workloadApiSocket = str('workloadApiSocket');
  const idF = opt(reader, m, 'spiffeId');
  let spiffeId: SpiffeId | undefined;
  if (idF) {
    const raw = reader.string(idF, 'a SPIFFE ID');
    if (raw !== undefined) {
      try {
        spiffeId = SpiffeId.parse(raw);
        if (td && !spiffeId.memberOf(td)) {
          reader.report(idF, `must be in the local trust domain ${td.name}`, 'ERR_CONFIG_TRUST_DOMAIN');
        }
      } catch (err) {
        reader.report(idF, `invalid SPIFFE ID: ${(err as Error).message}`, 'ERR_CONFIG_PROFILE');
      }
    }
  }
  if ((certFile === undefined) !== (keyFile === undefined)) {
    reader.report(f, 'certFile and keyFile go together', 'ERR_CONFIG_PROFILE');
  }
  // The served profile decides what credentials are needed (SPIFFE Federation §5.2.1.3 / §5.2.2.3).
  if (profile === 'https_web') {
    if (certFile === undefined) {
      reader.report(
        f,
        'https_web needs certFile and keyFile (a WebPKI certificate for the endpoint host)',
        'ERR_CONFIG_PROFILE',
      );
    }
    if (idF) reader.report(idF, 'spiffeId is only valid with profile https_spiffe', 'ERR_CONFIG_PROFILE');
    if (workloadApiSocket !== undefined) {
      reader.report(
        m.get('workloadApiSocket')!,
        'workloadApiSocket is only valid with profile https_spiffe',
        'ERR_CONFIG_PROFILE',
      );
    }
  }
  // https_spiffe with neither workloadApiSocket nor certFile/keyFile: the broker mints its own
  // X509-SVID through the source SPIRE server's SVID API (MintX509SVID) and renews it at half-life.
  const hF = opt(reader, m, 'refreshHint');
  const hintMs = hF ? reader.duration(hF, 1000, DAY_MS) : BROKER_DEFAULTS.endpointRefreshHintSeconds * 1000;
  if (hF && hintMs !== undefined && hintMs % 1000 !== 0) {
    reader.report(hF, 'refreshHint is published in whole seconds (SPIFFE Trust Domain and Bundle §4.1.2)');
  }
  const piF = opt(reader, m, 'pollInterval');
  const pollIntervalMs = piF ? reader.duration(piF, 10, 10 * 60_000) : BROKER_DEFAULTS.endpointPollIntervalMs;
  const bundleMapPath = str('bundleMapPath');
  if (bundleMapPath !== undefined && (!bundleMapPath.startsWith('/') || bundleMapPath === '/')) {
    reader.report(m.get('bundleMapPath')!, 'must be an absolute HTTP path other than "/", e.g. /bundle-map');
  }
  const sfF = opt(reader, m, 'serveFederatedInMap');
  const serveFederatedInMap = sfF ? reader.boolean(sfF) : false;
  const mhF = opt(reader, m, 'maxHeldRequests');
  const maxHeldRequests = mhF ? reader.integer(mhF, 0, 1_000_000) : BROKER_DEFAULTS.endpointMaxHeldRequests;
  const htF = opt(reader, m, 'handshakeTimeout');
  const handshakeTimeoutMs = htF
    ? reader.duration(htF, 100, 120_000)
    : BROKER_DEFAULTS.endpointHandshakeTimeoutMs;
  const mcF = opt(reader, m, 'maxConnectionsPerAddress');
  const maxConnectionsPerAddress = mcF
    ? reader.integer(mcF, 1, 1_000_000)
    : BROKER_DEFAULTS.endpointMaxConnectionsPerAddress;
  if (
    reader.issues.length > before ||
    !addr ||
    !profile ||
    hintMs === undefined ||
    pollIntervalMs === undefined ||
    serveFederatedInMap === undefined ||
    maxHeldRequests === undefined ||
    handshakeTimeoutMs === undefined ||
    maxConnectionsPerAddress === undefined
  ) {
    return undefined;
  }
  return {
    listen: addr,
    profile,
    ...(certFile !== undefined ? { certFile } : {}),
    ...(keyFile !== undefined ? { keyFile } : {}),
    ...(spiffeId ? { spiffeId } : {}),
    ...(workloadApiSocket !== undefined ? { workloadApiSocket } : {}),
    refreshHintSeconds: hintMs / 1000,
    pollIntervalMs,
    ...(bundleMapPath !== undefined ? { bundleMapPath } : {}),
    serveFederatedInMap,
    maxHeldRequests,
    handshakeTimeoutMs,
    maxConnectionsPerAddress,
  };
}

function readAdmin(reader: YamlReader, f: Field | undefined): AdminConfig | undefined {
  if (!f) return { listen: defaultListen(BROKER_DEFAULTS.adminListen), adminIds: [] };
  const m = reader.map(f, ['listen', 'socket', 'adminIds']);
  if (!m) return undefined;
  const before = reader.issues.length;
  const lF = opt(reader, m, 'listen');
  const sF = opt(reader, m, 'socket');
  if (lF && sF) reader.report(sF, 'set either listen or socket, not both');
  const addr = lF ? listen(reader, lF) : undefined;
  const socket = sF ? reader.string(sF, 'an absolute socket path') : undefined;
  if (sF && socket !== undefined && !socket.startsWith('/')) reader.report(sF, 'must be an absolute path');
  const idsF = opt(reader, m, 'adminIds');
  const adminIds: SpiffeId[] = [];
  for (const it of (idsF ? reader.seq(idsF, 'a list of SPIFFE IDs') : undefined) ?? []) {
    const raw = reader.string(it, 'a SPIFFE ID');
    if (raw === undefined) continue;
    try {
      adminIds.push(SpiffeId.parse(raw));
    } catch (err) {
      reader.report(it, `invalid SPIFFE ID: ${(err as Error).message}`);
    }
  }
  const effective = addr ?? (socket === undefined ? defaultListen(BROKER_DEFAULTS.adminListen) : undefined);
  // The admin API changes what the broker trusts: off-host it is mTLS with named callers only.
  if (effective && !isLoopbackHost(effective.host) && adminIds.length === 0) {
    reader.report(
      lF ?? f,
      `admin listen ${effective.host} is not loopback: set adminIds (callers are then authenticated with mTLS)`,
      'ERR_CONFIG_ADDRESS',
    );
  }
  if (reader.issues.length > before) return undefined;
  return {
    ...(effective ? { listen: effective } : {}),
    ...(socket !== undefined ? { socket } : {}),
    adminIds: Object.freeze(adminIds),
  };
}

function readVerify(reader: YamlReader, f: Field | undefined): VerifyApiConfig | undefined {
  const d = {
    listen: defaultListen(BROKER_DEFAULTS.verifyListen),
    maxBodyBytes: BROKER_DEFAULTS.verifyMaxBodyBytes,
  };
  if (!f) return d;
  const m = reader.map(f, ['listen', 'maxBodyBytes']);
  if (!m) return undefined;
  const lF = opt(reader, m, 'listen');
  const addr = lF ? listen(reader, lF) : d.listen;
  const bF = opt(reader, m, 'maxBodyBytes');
  const maxBodyBytes = bF ? reader.byteSize(bF, 1024, 16 * 1024 * 1024) : d.maxBodyBytes;
  return addr && maxBodyBytes !== undefined ? { listen: addr, maxBodyBytes } : undefined;
}

/** `fetch.keepAlive.maxIdle`: `auto` (one per allowlisted peer, at least 1,024) or 0..1,000,000. */
function readMaxIdle(reader: YamlReader, f: Field): number | 'auto' | undefined {
  const v = f.node && 'value' in f.node ? f.node.value : undefined;
  if (v === 'auto') return 'auto';
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= 1_000_000) return v;
  reader.report(f, 'must be auto or an integer in 0..1000000');
  return undefined;
}

function readFetch(reader: YamlReader, f: Field | undefined): FetchConfig | undefined {
  const d: FetchConfig = {
    connectTimeoutMs: BROKER_DEFAULTS.fetchConnectTimeoutMs,
    timeoutMs: BROKER_DEFAULTS.fetchTimeoutMs,
    maxBodyBytes: BROKER_DEFAULTS.fetchMaxBodyBytes,
    keepAlive: {
      idleTimeoutMs: BROKER_DEFAULTS.fetchKeepAliveIdleTimeoutMs,
      maxIdle: BROKER_DEFAULTS.fetchKeepAliveMaxIdle,
    },
  };
  if (!f) return d;
  const m = reader.map(f, ['connectTimeout', 'timeout', 'maxBodyBytes', 'keepAlive']);
  if (!m) return undefined;
  const cF = opt(reader, m, 'connectTimeout');
  const connectTimeoutMs = cF ? reader.duration(cF, 100, 10 * 60_000) : d.connectTimeoutMs;
  const tF = opt(reader, m, 'timeout');
  const timeoutMs = tF ? reader.duration(tF, 100, 10 * 60_000) : d.timeoutMs;
  const bF = opt(reader, m, 'maxBodyBytes');
  const maxBodyBytes = bF ? reader.byteSize(bF, 1024, 64 * 1024 * 1024) : d.maxBodyBytes;
  let keepAlive: FetchConfig['keepAlive'] | undefined = d.keepAlive;
  const kF = opt(reader, m, 'keepAlive');
  if (kF) {
    const k = reader.map(kF, ['idleTimeout', 'maxIdle']);
    const iF = k && opt(reader, k, 'idleTimeout');
    const xF = k && opt(reader, k, 'maxIdle');
    const idleTimeoutMs = iF ? reader.duration(iF, 0, DAY_MS) : d.keepAlive.idleTimeoutMs;
    const maxIdle = xF ? readMaxIdle(reader, xF) : d.keepAlive.maxIdle;
    keepAlive =
      k && idleTimeoutMs !== undefined && maxIdle !== undefined ? { idleTimeoutMs, maxIdle } : undefined;
  }
  if (
    connectTimeoutMs === undefined ||
    timeoutMs === undefined ||
    maxBodyBytes === undefined ||
    keepAlive === undefined
  )
    return undefined;
  if (connectTimeoutMs > timeoutMs) {
    reader.report(cF ?? f, 'connectTimeout must not exceed timeout');
    return undefined;
  }
  return { connectTimeoutMs, timeoutMs, maxBodyBytes, keepAlive };
}

function readReconcile(reader: YamlReader, f: Field | undefined): ReconcileConfig | undefined {
  const d: ReconcileConfig = { enforce: false, deleteMode: 'restrict' };
  if (!f) return d;
  const m = reader.map(f, ['enforce', 'deleteMode']);
  if (!m) return undefined;
  const eF = opt(reader, m, 'enforce');
  const enforce = eF ? reader.boolean(eF) : d.enforce;
  const dF = opt(reader, m, 'deleteMode');
  const deleteMode = dF ? reader.oneOf(dF, ['restrict', 'dissociate', 'delete'] as const) : d.deleteMode;
  return enforce === undefined || deleteMode === undefined ? undefined : { enforce, deleteMode };
}

function joinPath(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

function readAudit(reader: YamlReader, f: Field | undefined, stateDir: string): AuditConfig | undefined {
  const d: AuditConfig = {
    file: joinPath(stateDir, BROKER_DEFAULTS.auditFileName),
    keyFile: joinPath(stateDir, BROKER_DEFAULTS.auditKeyFileName),
    fsync: 'always',
  };
  if (!f) return d;
  const m = reader.map(f, ['file', 'keyFile', 'fsync']);
  if (!m) return undefined;
  const fF = opt(reader, m, 'file');
  const file = fF ? reader.string(fF, 'a file path') : d.file;
  const kF = opt(reader, m, 'keyFile');
  const keyFile = kF ? reader.string(kF, 'a file path') : d.keyFile;
  const sF = opt(reader, m, 'fsync');
  const fsync = sF ? reader.oneOf(sF, ['always', 'never'] as const) : d.fsync;
  return file === undefined || keyFile === undefined || fsync === undefined
    ? undefined
    : { file, keyFile, fsync };
}

function readProbe(reader: YamlReader, f: Field | undefined): ProbeConfig | undefined {
  const d: ProbeConfig = { intervalMs: BROKER_DEFAULTS.probeIntervalMs };
  if (!f) return d;
  const m = reader.map(f, ['listen', 'interval']);
  if (!m) return undefined;
  const lF = opt(reader, m, 'listen');
  const addr = lF ? listen(reader, lF) : undefined;
  const iF = opt(reader, m, 'interval');
  const intervalMs = iF ? reader.duration(iF, 100, DAY_MS) : d.intervalMs;
  if ((lF && !addr) || intervalMs === undefined) return undefined;
  return addr ? { listen: addr, intervalMs } : { intervalMs };
}
