import { parseArgs } from 'node:util';
import { type BundleFileFormat, detectBundleFormat, parseBundleFile } from '../core/bundle/bundle-file.js';
import { parseBundleMap } from '../core/bundle/bundle-map.js';
import type { TrustBundle } from '../core/bundle/trust-bundle.js';
import { TrustDomain } from '../core/spiffeid/trust-domain.js';
import { PEM_BUNDLE_NOTE } from './bundle-file.js';
import { type CliIo, EXIT_OK } from './io.js';
import { printJson, readInput, reportFailure, UsageError } from './output.js';

export const BUNDLE_USAGE = `usage: spiffe-broker bundle parse <file> [--trust-domain <td>] [--json]

Parses a trust bundle file and prints its authorities (SHA-256 fingerprints, key IDs), sequence,
refresh hint and any entries ignored per the spec. The file may be
  - a SPIFFE bundle (spire-server bundle show -format spiffe): --trust-domain is required, the
    document does not name its trust domain;
  - PEM CA certificates (spire-server bundle show, the bundle.pem of spire-server x509 mint):
    X.509 authorities only; --trust-domain is required;
  - a SPIFFE Bundle Map (the broker's /v1/bundles): every bundle, or only --trust-domain's.
Exit status: 0 accepted, 1 refused, 2 usage error.`;

/** A bundle summarised for output; shared by `bundle parse` and `fetch`. */
export function bundleSummary(bundle: TrustBundle): {
  trustDomain: string;
  sequence: string;
  refreshHint: number;
  x509Authorities: { sha256: string; subject: string; notAfter: string }[];
  jwtAuthorities: { kid: string; keyType: string }[];
} {
  return {
    trustDomain: bundle.trustDomain.name,
    sequence: bundle.sequence.toString(),
    refreshHint: bundle.refreshHint,
    x509Authorities: bundle.x509Authorities.map((a) => ({
      sha256: a.sha256,
      subject: a.certificate.subject.replace(/\n/g, ', '),
      notAfter: new Date(a.notAfter).toISOString(),
    })),
    jwtAuthorities: [...bundle.jwtAuthorities.values()].map((a) => ({
      kid: a.kid,
      keyType: describeKey(a.publicKey.asymmetricKeyType, a.publicKey.asymmetricKeyDetails),
    })),
  };
}

function describeKey(
  type: string | undefined,
  details: { namedCurve?: string; modulusLength?: number } | undefined,
): string {
  if (type === 'ec') return `EC ${details?.namedCurve ?? ''}`.trim();
  if (type === 'rsa' || type === 'rsa-pss') return `RSA ${details?.modulusLength ?? ''}`.trim();
  return type ?? 'unknown';
}

/** Renders a bundle summary as aligned text. */
export function renderBundleText(
  s: ReturnType<typeof bundleSummary>,
  ignored: readonly { index: number; reason: string }[],
): string {
  const lines = [
    `trust domain   ${s.trustDomain}`,
    `sequence       ${s.sequence === '0' ? '(not set)' : s.sequence}`,
    `refresh hint   ${s.refreshHint === 0 ? '(not set)' : `${s.refreshHint} s`}`,
    `X.509 authorities (${s.x509Authorities.length})`,
    ...s.x509Authorities.map((a) => `  sha256:${a.sha256}  expires ${a.notAfter}  ${a.subject}`),
    `JWT authorities (${s.jwtAuthorities.length})`,
    ...s.jwtAuthorities.map((a) => `  kid ${a.kid}  ${a.keyType}`),
  ];
  if (s.x509Authorities.length === 0 && s.jwtAuthorities.length === 0) {
    lines.push(
      'NOTE: no authorities: this trust domain has revoked all its keys (every SVID from it is invalid)',
    );
  }
  if (ignored.length > 0) {
    lines.push(
      `ignored entries (${ignored.length})`,
      ...ignored.map((i) => `  keys[${i.index}]: ${i.reason}`),
    );
  }
  return `${lines.join('\n')}\n`;
}

function formatLine(format: BundleFileFormat): string | undefined {
  return format === 'pem' ? `format         ${PEM_BUNDLE_NOTE}` : undefined;
}

/** `spiffe-broker bundle parse`. */
export async function bundleCommand(args: string[], io: CliIo): Promise<number> {
  let json = args.includes('--json');
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { 'trust-domain': { type: 'string' }, json: { type: 'boolean' } },
    });
    json = values.json === true;
    const [sub, file, ...rest] = positionals;
    if (sub !== 'parse') throw new UsageError(`unknown bundle subcommand ${JSON.stringify(sub ?? '')}`);
    if (!file || rest.length > 0) throw new UsageError('bundle parse takes exactly one file');
    const tdName = values['trust-domain'];
    let td: TrustDomain | undefined;
    if (tdName !== undefined) {
      try {
        td = TrustDomain.parse(tdName);
      } catch (err) {
        throw new UsageError(`--trust-domain: ${(err as Error).message}`);
      }
    }
    const bytes = await readInput(io, file, 'bundle file');
    const format = detectBundleFormat(bytes);
    if (format === 'bundle-map' && td === undefined) {
      // A Bundle Map names its trust domains: show every bundle (SPIFFE Federation §4.2).
      const map = parseBundleMap(bytes);
      const entries = [...map.bundles.values()].map((b) => ({
        summary: bundleSummary(b),
        ignored: map.ignored.get(b.trustDomain.name) ?? [],
      }));
      if (json) {
        printJson(io, {
          ok: true,
          format,
          bundles: entries.map((e) => ({ ...e.summary, ignored: e.ignored })),
        });
      } else {
        io.stdout(
          `Bundle Map: ${entries.length} trust domain${entries.length === 1 ? '' : 's'}\n${entries
            .map((e) => `\n${renderBundleText(e.summary, e.ignored)}`)
            .join('')}`,
        );
      }
      return EXIT_OK;
    }
    if (td === undefined) {
      throw new UsageError(
        `--trust-domain is required: ${format === 'pem' ? 'PEM certificates do' : 'a SPIFFE bundle document does'} not name their trust domain`,
      );
    }
    const { bundle, ignored } = parseBundleFile(td, bytes);
    const summary = bundleSummary(bundle);
    if (json) {
      printJson(io, { ok: true, format, ...summary, ignored });
    } else {
      const line = formatLine(format);
      io.stdout(`${line ? `${line}\n` : ''}${renderBundleText(summary, ignored)}`);
    }
    return EXIT_OK;
  } catch (err) {
    return reportFailure(io, json, err, BUNDLE_USAGE);
  }
}
