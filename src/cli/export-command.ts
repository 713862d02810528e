import { type AdminTarget, describeTarget, nodeHttpGet } from '../adapters/admin/client.js';
import { parseBundleMap } from '../core/bundle/bundle-map.js';
import { defaultJwksUri, issuerProblem, renderOidcDiscovery } from '../core/bundle/oidc.js';
import { OUTPUT_FORMATS, type RenderedOutput, renderOutput } from '../core/bundle/outputs.js';

import type { TrustBundle } from '../core/bundle/trust-bundle.js';
import { TrustDomain } from '../core/spiffeid/trust-domain.js';
import { nodeStateFs, type StateFs, StateStore } from '../engine/federation/state-store.js';
import { ApiError, BrokerError, OutputError } from '../errors.js';
import { EXIT_OK, EXIT_USAGE } from './io.js';
import { printJson, reportFailure, UsageError } from './output.js';
import {
  type AdminCliIo,
  adminFailureHint,
  adminTarget,
  DEFAULT_ADMIN_URL,
  parseAdminArgs,
} from './status-command.js';

/** What an export prints: a document, the trust domains it describes, what was left out. */
type Exported = Pick<RenderedOutput, 'text' | 'trustDomains' | 'omitted'>;

/** Every format `export` takes: the renderers' ({@link OUTPUT_FORMATS}) and two more. */
export const EXPORT_FORMATS = [...OUTPUT_FORMATS, 'oidc', 'cluster-trust-bundle'] as const;

export const EXPORT_USAGE = `usage:
  spiffe-broker export --format <format> [--trust-domain <td>]
                       [--admin <url> | --socket <path> | --state-dir <dir>] [--json]
                       [--issuer <url> [--jwks-uri <url>]] [--signer-name <name>]

Prints the accepted bundles in a consumer's format, rendered exactly as the broker's file outputs
render them — for scripts and GitOps. The bundles come from a running broker (GET /v1/bundles on
its admin API: the local trust domain and every accepted peer) or, with --state-dir, from a state
directory (the last-known-good peer bundles; nothing in it is changed).
  --format <format>       ${EXPORT_FORMATS.join(' | ')}
                            grpc-bundle-map, envoy-bundle-map: X.509-only SPIFFE Bundle Map for
                              proxyless gRPC / Envoy (domains without X.509 authority left out)
                            bundle-map: the full SPIFFE Bundle Map
                            bundle, pem, jwks: one trust domain (--trust-domain required)
                            oidc: OIDC discovery document of --trust-domain (--issuer required)
                            cluster-trust-bundle: certificates.k8s.io/v1beta1 ClusterTrustBundle of
                              --trust-domain, or a v1 List of every domain with X.509 authorities
  --trust-domain <td>     the trust domain (name or spiffe:// ID); for the map formats: only it
  --admin <url>           admin API base URL (default ${DEFAULT_ADMIN_URL}, or $SPIFFE_BROKER_ADMIN)
  --socket <path>         admin API Unix socket instead
  --state-dir <dir>       read a state directory instead of a running broker
  --issuer <url>          oidc: the issuer (the JWT-SVIDs' iss, SPIRE's jwt_issuer)
  --jwks-uri <url>        oidc: the JWK Set URL (default <issuer>/keys)
  --signer-name <name>    cluster-trust-bundle: signer name (default spiffe-broker.dev/federation)
  --json                  print {"ok":true,"format","trustDomains","omitted","document"}
Exit status: 0 printed, 1 no such trust domain or the source could not be read, 2 usage error
(unknown format included).`;

/** Read-only file system for a state directory: a corrupt file is reported, never quarantined. */
const readOnlyFs: StateFs = {
  ...nodeStateFs,
  mkdir: () => Promise.reject(new Error('read-only')),
  open: (p, flags, mode) =>
    flags === 'r' ? nodeStateFs.open(p, flags, mode) : Promise.reject(new Error('export does not write')),
  rename: () => Promise.reject(new Error('export does not rename')),
  unlink: () => Promise.reject(new Error('export does not delete')),
};

/** The accepted bundles of a running broker: `/v1/bundles`, parsed strictly (exact sequences). */
async function bundlesFromAdmin(io: AdminCliIo, target: AdminTarget): Promise<TrustBundle[]> {
  const where = `${describeTarget(target)}/v1/bundles`;
  let res: { status: number; body: string };
  try {
    res = await (io.httpGet ?? nodeHttpGet)(target, '/v1/bundles', { signal: io.signal });
  } catch (cause) {
    throw new ApiError(
      'ERR_API_CONNECT',
      `cannot reach the admin API at ${where}: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
  if (res.status !== 200) {
    let detail = '';
    try {
      const body = JSON.parse(res.body) as { code?: unknown; message?: unknown };
      if (typeof body.code === 'string') detail = `: ${String(body.message)} (${body.code})`;
    } catch {
      // not JSON: the status says enough
    }
    throw new ApiError('ERR_API_RESPONSE', `${where} answered HTTP ${res.status}${detail}`);
  }
  try {
    return [...parseBundleMap(res.body).bundles.values()];
  } catch (cause) {
    throw new ApiError(
      'ERR_API_RESPONSE',
      `${where} did not answer a SPIFFE Bundle Map: ${(cause as Error).message}`,
      { cause },
    );
  }
}

/** The last-known-good bundles in a state directory, and the files that could not be read. */
async function bundlesFromStateDir(
  dir: string,
  fs: StateFs,
): Promise<{ bundles: TrustBundle[]; problems: string[] }> {
  const { peers, problems } = await new StateStore({ dir }, { fs }).loadAll();
  return {
    bundles: peers.flatMap((p) => (p.lastKnownGood ? [p.lastKnownGood.bundle] : [])),
    problems: problems.map((p) => `${p.message} (${p.code})`),
  };
}

function parseTrustDomain(value: string): string {
  try {
    return TrustDomain.parseNameOrId(value).name;
  } catch (err) {
    throw new UsageError(`--trust-domain ${JSON.stringify(value)}: ${(err as Error).message}`);
  }
}

function requireBundle(bundles: readonly TrustBundle[], td: string | undefined, format: string): TrustBundle {
  if (td === undefined) {
    throw new OutputError(
      'ERR_OUTPUT_FORMAT',
      `format ${format} describes one trust domain: give --trust-domain`,
    );
  }
  const bundle = bundles.find((b) => b.trustDomain.name === td);
  if (!bundle) {
    throw new OutputError(
      'ERR_OUTPUT_TRUST_DOMAIN',
      `no accepted bundle for trust domain ${JSON.stringify(td)} (held: ${bundles.map((b) => b.trustDomain.name).join(', ') || 'none'})`,
    );
  }
  return bundle;
}

/** ClusterTrustBundle manifests, from the Kubernetes adapter's own naming and PEM rules. */
async function renderClusterTrustBundles(
  bundles: readonly TrustBundle[],
  td: string | undefined,
  signerName: string | undefined,
): Promise<Exported> {
  const ctb = await import('../adapters/k8s/cluster-trust-bundle-sink.js');
  const { TRUST_DOMAIN_LABEL, trustDomainLabelValue } = await import('../adapters/k8s/trust-domain-label.js');
  const signer = signerName ?? ctb.DEFAULT_CTB_SIGNER_NAME;
  const problem = ctb.signerNameProblem(signer);
  if (problem !== undefined) throw new UsageError(`--signer-name ${JSON.stringify(signer)} ${problem}`);
  const chosen = td === undefined ? [...bundles] : [requireBundle(bundles, td, 'cluster-trust-bundle')];
  chosen.sort((a, b) => (a.trustDomain.name < b.trustDomain.name ? -1 : 1));
  const omitted = [];
  const items = [];
  for (const b of chosen) {
    const pem = ctb.clusterTrustBundlePem(b);
    if (pem === '') {
      // The API refuses an empty trustBundle: such a domain gets no object (as the sink does).
      omitted.push({ trustDomain: b.trustDomain.name, reason: 'no X.509 authority' });
      continue;
    }
    items.push({
      apiVersion: 'certificates.k8s.io/v1beta1',
      kind: 'ClusterTrustBundle',
      metadata: {
        name: ctb.clusterTrustBundleName(signer, b.trustDomain.name),
        labels: { [TRUST_DOMAIN_LABEL]: trustDomainLabelValue(b.trustDomain.name) },
      },
      spec: { signerName: signer, trustBundle: pem },
    });
  }
  const doc = td === undefined ? { apiVersion: 'v1', kind: 'List', items } : items[0];
  if (doc === undefined) {
    throw new OutputError(
      'ERR_OUTPUT_TRUST_DOMAIN',
      `trust domain ${JSON.stringify(td)} has no X.509 authority: no ClusterTrustBundle can hold it`,
    );
  }
  return {
    text: `${JSON.stringify(doc, null, 2)}\n`,
    trustDomains: items.map((i) => i.metadata.labels[TRUST_DOMAIN_LABEL]!),
    omitted,
  };
}

/**
 * `spiffe-broker export`: the accepted bundles in one output format, from a running broker's admin
 * API or a state directory. Injected: `io.httpGet` (admin API), `stateFs` (state directory).
 */
export async function exportCommand(
  args: string[],
  io: AdminCliIo & { readonly stateFs?: StateFs },
): Promise<number> {
  let json = args.includes('--json');
  let values: Record<string, string | boolean | undefined> = {};
  try {
    const parsed = parseAdminArgs(args, {
      format: { type: 'string' },
      'trust-domain': { type: 'string' },
      'state-dir': { type: 'string' },
      issuer: { type: 'string' },
      'jwks-uri': { type: 'string' },
      'signer-name': { type: 'string' },
    });
    values = parsed.values;
    json = parsed.values.json === true;
    if (parsed.positionals.length > 0) {
      throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
    }
    const format = values.format as string | undefined;
    if (format === undefined) throw new UsageError('--format is required');
    if (!(EXPORT_FORMATS as readonly string[]).includes(format)) {
      throw new OutputError(
        'ERR_OUTPUT_FORMAT',
        `unknown format ${JSON.stringify(format)}; one of ${EXPORT_FORMATS.join(', ')}`,
      );
    }
    const td =
      typeof values['trust-domain'] === 'string' ? parseTrustDomain(values['trust-domain']) : undefined;
    const stateDir = values['state-dir'] as string | undefined;
    if (stateDir !== undefined && (values.admin !== undefined || values.socket !== undefined)) {
      throw new UsageError('give either --state-dir or --admin/--socket, not both');
    }
    const issuer = values.issuer as string | undefined;
    if (format === 'oidc') {
      if (issuer === undefined) throw new UsageError('format oidc needs --issuer');
      const problem = issuerProblem(issuer, { allowHttp: true });
      if (problem !== undefined) throw new UsageError(`--issuer ${JSON.stringify(issuer)} ${problem}`);
    }

    let bundles: TrustBundle[];
    let problems: string[] = [];
    if (stateDir !== undefined) {
      if (stateDir === '') throw new UsageError('--state-dir needs a path');
      ({ bundles, problems } = await bundlesFromStateDir(stateDir, io.stateFs ?? readOnlyFs));
    } else {
      bundles = await bundlesFromAdmin(
        io,
        adminTarget(values as { admin?: string; socket?: string }, io.env),
      );
    }
    for (const p of problems) io.stderr(`warning: ${p}\n`);

    let out: Exported;
    if (format === 'oidc') {
      const bundle = requireBundle(bundles, td, format);
      const jwksUri = (values['jwks-uri'] as string | undefined) ?? defaultJwksUri(issuer!);
      out = {
        text: `${renderOidcDiscovery(bundle, { issuer: issuer!, jwksUri })}\n`,
        trustDomains: [bundle.trustDomain.name],
        omitted: [],
      };
    } else if (format === 'cluster-trust-bundle') {
      out = await renderClusterTrustBundles(bundles, td, values['signer-name'] as string | undefined);
    } else if (td !== undefined && ['grpc-bundle-map', 'envoy-bundle-map', 'bundle-map'].includes(format)) {
      out = renderOutput(format, { bundles: [requireBundle(bundles, td, format)] });
    } else {
      out = renderOutput(format, td === undefined ? { bundles } : { bundles, trustDomain: td });
    }
    if (json) {
      printJson(io, {
        ok: true,
        format,
        trustDomains: out.trustDomains,
        omitted: out.omitted,
        ...(problems.length > 0 ? { problems } : {}),
        document: out.text,
      });
    } else io.stdout(out.text);
    return EXIT_OK;
  } catch (err) {
    const code = reportFailure(
      io,
      json,
      err,
      EXPORT_USAGE,
      values['state-dir'] === undefined
        ? adminFailureHint(err, values as { admin?: string; socket?: string }, io.env)
        : undefined,
    );
    // An unknown format is a usage error (2), though coded ERR_OUTPUT_FORMAT.
    return err instanceof BrokerError && err.code === 'ERR_OUTPUT_FORMAT' ? EXIT_USAGE : code;
  }
}
