import { parseArgs } from 'node:util';
import { parseBundleFile } from '../core/bundle/bundle-file.js';
import { SpiffeId } from '../core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../core/spiffeid/trust-domain.js';
import { type FetchDeps, type FetchProfile, fetchPeerBundle } from '../engine/federation/fetch.js';
import { BrokerError } from '../errors.js';
import { systemClock } from '../platform/clock.js';
import { bundleSummary, renderBundleText } from './bundle-command.js';
import { type CliIo, EXIT_OK } from './io.js';
import { printJson, readInput, reportFailure, UsageError } from './output.js';

export const FETCH_USAGE = `usage: spiffe-broker fetch --trust-domain <td> --url <https-url> [--url <https-url> ...]
         --profile https_web|https_spiffe [--ca <pem-file>]
         [--endpoint-spiffe-id <spiffe-id>] [--bootstrap-bundle <file>] [--json]

Fetches a peer's bundle from its bundle endpoint once and validates it, changing nothing.
  --trust-domain        the trust domain the bundle belongs to (never taken from the URL)
  --url                 https URL of the bundle endpoint; repeat for failover, tried in order
  --profile             https_web: server certificate from a trusted CA, host name checked;
                        https_spiffe: server presents an X509-SVID for --endpoint-spiffe-id
  --ca                  https_web only: PEM CA certificate(s) to trust instead of the default roots
  --endpoint-spiffe-id  https_spiffe only (required): the SPIFFE ID the server must present
  --bootstrap-bundle    https_spiffe only (required): the endpoint trust domain's bundle, as a
                        SPIFFE bundle (JSON), a Bundle Map holding it, or PEM CA certificates
Exit status: 0 accepted, 1 refused, 2 usage error.`;

/**
 * What to try after a failed fetch: the flag that most likely fixes it (`--ca`, `--profile`,
 * `--bootstrap-bundle`, `--endpoint-spiffe-id`, `--url`), or undefined.
 */
export function fetchFailureHint(
  err: unknown,
  values: { readonly profile?: string | undefined; readonly ca?: string | undefined },
): string | undefined {
  if (!(err instanceof BrokerError)) return undefined;
  const web = values.profile === 'https_web';
  switch (err.code) {
    case 'ERR_FETCH_TLS':
      if (web && values.ca === undefined) {
        return "if the endpoint has a certificate from a private CA, pass that CA with --ca <pem-file>; if it serves an X509-SVID (SPIRE's default), use --profile https_spiffe with --endpoint-spiffe-id and --bootstrap-bundle";
      }
      if (web) {
        return `check that --ca ${values.ca} holds the CA that issued the endpoint's certificate, and that the URL's host name is in that certificate`;
      }
      return "--bootstrap-bundle must hold the current bundle of the endpoint ID's trust domain (spire-server bundle show -format spiffe)";
    case 'ERR_FETCH_ENDPOINT_ID':
      return "--endpoint-spiffe-id must be the SPIFFE ID the endpoint presents (SPIRE's own endpoint: spiffe://<trust domain>/spire/server)";
    case 'ERR_FETCH_CONNECT':
    case 'ERR_FETCH_TIMEOUT':
      return 'check the host and port of --url (SPIRE serves its bundle endpoint on federation.bundle_endpoint.port, 8443 by default)';
    default:
      return undefined;
  }
}

function parseFlag<T>(value: string, flag: string, parse: (v: string) => T): T {
  try {
    return parse(value);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/**
 * `spiffe-broker fetch`: one fetch and validation of a peer's bundle, changing nothing.
 * With `--json` it prints `{"ok":true,"trustDomain","sequence","refreshHint","x509Authorities",
 * "jwtAuthorities","url","ignored"}` or `{"ok":false,"code","message"}`.
 *
 * @param deps the fetcher's side effects (tests inject `connect`); the clock's `now` comes from `io`.
 * @returns 0 accepted, 1 refused, 2 usage error.
 * @example
 * await fetchCommand(['--trust-domain', 'peer.example', '--url', 'https://peer.example/', '--profile', 'https_web'], io);
 */
export async function fetchCommand(args: string[], io: CliIo, deps: FetchDeps = {}): Promise<number> {
  let json = args.includes('--json');
  let values: {
    'trust-domain'?: string;
    url?: string[];
    profile?: string;
    ca?: string;
    'endpoint-spiffe-id'?: string;
    'bootstrap-bundle'?: string;
    json?: boolean;
  } = {};
  try {
    try {
      ({ values } = parseArgs({
        args,
        allowPositionals: false,
        options: {
          'trust-domain': { type: 'string' },
          url: { type: 'string', multiple: true },
          profile: { type: 'string' },
          ca: { type: 'string' },
          'endpoint-spiffe-id': { type: 'string' },
          'bootstrap-bundle': { type: 'string' },
          json: { type: 'boolean' },
        },
      }));
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    json = values.json === true;
    const tdName = values['trust-domain'];
    if (!tdName) {
      throw new UsageError('--trust-domain is required: the trust domain is never inferred from the URL');
    }
    const trustDomain = parseFlag(tdName, '--trust-domain', TrustDomain.parse);
    const urls = values.url ?? [];
    if (urls.length === 0) throw new UsageError('at least one --url is required');

    let profile: FetchProfile;
    if (values.profile === 'https_web') {
      if (values['endpoint-spiffe-id'] !== undefined || values['bootstrap-bundle'] !== undefined) {
        throw new UsageError('--endpoint-spiffe-id and --bootstrap-bundle belong to --profile https_spiffe');
      }
      profile =
        values.ca === undefined
          ? { kind: 'https_web' }
          : { kind: 'https_web', caPem: new TextDecoder().decode(await readInput(io, values.ca, 'CA file')) };
    } else if (values.profile === 'https_spiffe') {
      if (values.ca !== undefined) throw new UsageError('--ca belongs to --profile https_web');
      const idText = values['endpoint-spiffe-id'];
      if (!idText) throw new UsageError('--profile https_spiffe requires --endpoint-spiffe-id');
      const endpointSpiffeId = parseFlag(idText, '--endpoint-spiffe-id', SpiffeId.parse);
      const file = values['bootstrap-bundle'];
      if (!file) {
        throw new UsageError(
          `--profile https_spiffe requires --bootstrap-bundle: the bundle of ${endpointSpiffeId.trustDomain.name} that authenticates the endpoint`,
        );
      }
      // Federation §5.2.2.2: the endpoint trust domain's bundle, obtained out of band; as a SPIFFE
      // bundle, a Bundle Map holding it, or PEM CA certificates.
      const bundles = parseBundleFile(
        endpointSpiffeId.trustDomain,
        await readInput(io, file, 'bootstrap bundle'),
      ).bundle;
      profile = { kind: 'https_spiffe', endpointSpiffeId, bundles };
    } else {
      // Federation §7.2: the profile is configured, never guessed, never tried one after the other.
      throw new UsageError('--profile must be https_web or https_spiffe');
    }

    const result = await fetchPeerBundle(
      { trustDomain, urls, profile, signal: io.signal },
      { ...deps, clock: { now: io.now, sleep: deps.clock?.sleep ?? systemClock.sleep } },
    );
    if (result.kind !== 'bundle') throw new TypeError('unconditional fetch answered not-modified');
    const summary = bundleSummary(result.bundle);
    if (json) {
      printJson(io, { ok: true, ...summary, url: result.url, ignored: result.ignored });
    } else {
      const notes = result.failovers.map((f) => `note: ${f.url} failed first: ${f.message} (${f.code})\n`);
      io.stdout(
        `fetched from  ${result.url} (${result.bytes} bytes)\n${renderBundleText(summary, result.ignored)}`,
      );
      for (const n of notes) io.stderr(n);
    }
    return EXIT_OK;
  } catch (err) {
    return reportFailure(io, json, err, FETCH_USAGE, fetchFailureHint(err, values));
  }
}
