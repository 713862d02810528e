import { parseArgs } from 'node:util';
import { pemToDerList } from '../adapters/pki/pem.js';
import { verifyJwtSvid, verifyX509Svid } from '../core/verify/index.js';
import { loadBundles, PEM_BUNDLE_NOTE } from './bundle-file.js';
import { type CliIo, EXIT_OK, EXIT_REFUSED } from './io.js';
import { printJson, readInput, reportFailure, UsageError } from './output.js';

export const VERIFY_USAGE = `usage:
  spiffe-broker verify x509 --chain <pem file> --bundle <file> [--trust-domain <td>] [--json]
  spiffe-broker verify jwt --token <jwt | @file> --audience <aud> --bundle <file> [--trust-domain <td>] [--json]

Verifies an X509-SVID (leaf first, then intermediates, PEM) or a JWT-SVID against a SPIFFE bundle,
a Bundle Map or PEM CA certificates (X.509 authorities only), at the current time. A Bundle Map
binds each bundle to its trust domain; a single bundle is bound to --trust-domain, or, without it,
to the trust domain the SVID claims (the output says so).
Exit status: 0 accepted, 1 refused, 2 usage error.`;

/** `spiffe-broker verify x509|jwt`. */
export async function verifyCommand(args: string[], io: CliIo): Promise<number> {
  let json = args.includes('--json');
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        chain: { type: 'string' },
        token: { type: 'string' },
        audience: { type: 'string', multiple: true },
        bundle: { type: 'string' },
        'trust-domain': { type: 'string' },
        json: { type: 'boolean' },
      },
    });
    json = values.json === true;
    const [kind, ...rest] = positionals;
    if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
    if (kind !== 'x509' && kind !== 'jwt') throw new UsageError('verify takes "x509" or "jwt"');
    if (!values.bundle) throw new UsageError('--bundle is required');
    const bundleBytes = await readInput(io, values.bundle, 'bundle file');
    const { source, binding, format } = loadBundles(bundleBytes, values['trust-domain']);
    const now = io.now();

    let result: Awaited<ReturnType<typeof verifyJwtSvid>> | ReturnType<typeof verifyX509Svid>;
    if (kind === 'x509') {
      if (!values.chain) throw new UsageError('--chain is required for verify x509');
      const pem = Buffer.from(await readInput(io, values.chain, 'chain file')).toString('utf8');
      const chain = pemToDerList(pem, 'CERTIFICATE');
      if (chain.length === 0) throw new UsageError(`${values.chain}: no PEM CERTIFICATE blocks found`);
      result = verifyX509Svid(chain, source, { now });
    } else {
      if (!values.token) throw new UsageError('--token is required for verify jwt');
      if (!values.audience || values.audience.length === 0)
        throw new UsageError('--audience is required for verify jwt');
      const token = values.token.startsWith('@')
        ? Buffer.from(await readInput(io, values.token.slice(1), 'token file'))
            .toString('utf8')
            .trim()
        : values.token;
      result = await verifyJwtSvid(token, source, { audience: values.audience, now });
    }

    if (result.ok) {
      const out = {
        ok: true,
        kind,
        id: result.id.toString(),
        trustDomain: result.trustDomain.name,
        bundleBinding: binding,
        bundleFormat: format,
      };
      if (json) printJson(io, out);
      else {
        io.stdout(`accepted ${kind === 'x509' ? 'X509-SVID' : 'JWT-SVID'} ${out.id}\n`);
        if (binding === 'assumed') {
          io.stdout(
            `note: the bundle file names no trust domain; it was bound to ${out.trustDomain} as the SVID claims\n`,
          );
        }
      }
      return EXIT_OK;
    }
    // A PEM bundle has no JWT authorities: say so rather than leave "no key" unexplained.
    const note = format === 'pem' ? `the bundle file is ${PEM_BUNDLE_NOTE}` : undefined;
    if (json) {
      printJson(io, { ok: false, code: result.code, message: result.message, ...(note ? { note } : {}) });
    } else io.stderr(`refused: ${result.message} (${result.code})\n${note ? `note: ${note}\n` : ''}`);
    return EXIT_REFUSED;
  } catch (err) {
    return reportFailure(io, json, err, VERIFY_USAGE);
  }
}
