import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBundle } from '../../../src/adapters/endpoint/local-bundle.js';
import { type RunningBundleEndpoint, startBundleEndpoint } from '../../../src/adapters/endpoint/server.js';
import type { CredentialRefusal } from '../../../src/adapters/endpoint/tls-credentials.js';
import {
  type StreamedX509Svid,
  WorkloadApiSvidCredentials,
  type X509SvidStream,
} from '../../../src/adapters/endpoint/workload-credentials.js';
import { createX509Svid, type IssuedCert, pemToDerList } from '../../../src/adapters/pki/index.js';
import { WorkloadApiClient } from '../../../src/adapters/spire/workload/index.js';
import { marshalBundle } from '../../../src/core/bundle/codec.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { FakeBundleGetter, LOCAL_TD, makeBundle, makeCa } from './fixtures.js';
import { goFetch, goFetchOrSkip } from './go-fetch.js';
import { startWorkloadApiServer, type WorkloadApiServer, workloadApiOrSkip } from './workload-server.js';

const ID = SpiffeId.parse(`spiffe://${LOCAL_TD.name}/spiffe-broker`);
const notBefore = new Date(Date.now() - 60_000);
const notAfter = new Date(Date.now() + 3600_000);

function svidOf(cert: IssuedCert, id = ID): StreamedX509Svid {
  const keyDer = pemToDerList(cert.privateKeyPem!, 'PRIVATE KEY')[0]!;
  return { spiffeId: id, certChain: [cert.der], privateKeyPkcs8: keyDer };
}

/** A stream the test pushes updates into. */
class PushStream implements X509SvidStream {
  #watchers = new Set<(u: { svids: readonly StreamedX509Svid[] }) => void>();
  push(svids: StreamedX509Svid[]): void {
    for (const w of this.#watchers) w({ svids });
  }
  async watchX509Svids(
    signal: AbortSignal,
    watcher: { onUpdate(u: { svids: readonly StreamedX509Svid[] }): void },
  ): Promise<void> {
    const w = (u: { svids: readonly StreamedX509Svid[] }) => watcher.onUpdate(u);
    this.#watchers.add(w);
    await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    this.#watchers.delete(w);
  }
}

describe('WorkloadApiSvidCredentials', () => {
  it('uses the SVID for the configured ID, and refuses updates without a usable one', async () => {
    const ca = await makeCa();
    const mine = await createX509Svid({ id: ID, issuer: ca, notBefore, notAfter });
    const other = SpiffeId.parse(`spiffe://${LOCAL_TD.name}/workload`);
    const theirs = await createX509Svid({ id: other, issuer: ca, notBefore, notAfter });
    const stream = new PushStream();
    const refusals: CredentialRefusal[] = [];
    const creds = new WorkloadApiSvidCredentials({
      stream,
      spiffeId: ID,
      onRefused: (r) => refusals.push(r),
    });
    const ready = creds.ready();
    await new Promise((r) => setImmediate(r));
    stream.push([svidOf(theirs, other)]);
    expect(refusals[0]?.error).toMatchObject({ code: 'ERR_ENDPOINT_SVID' });
    await new Promise((r) => setImmediate(r));
    stream.push([svidOf(theirs, other), svidOf(mine)]);
    const first = await ready;
    expect(first.leaf.serialNumber).toBe(mine.certificate.serialNumber);
    // An SVID whose key does not match its certificate is refused; the current one stays.
    const stop = new AbortController();
    const running = creds.run(stop.signal);
    await new Promise((r) => setImmediate(r));
    stream.push([{ ...svidOf(mine), privateKeyPkcs8: svidOf(theirs).privateKeyPkcs8 }]);
    expect(refusals.at(-1)?.error).toMatchObject({ code: 'ERR_ENDPOINT_SVID' });
    expect(creds.current()).toBe(first);
    stop.abort();
    await running;
  });
});

describe.skipIf(
  !workloadApiOrSkip('endpoint SVID from the Workload API') ||
    !goFetchOrSkip('endpoint SVID from the Workload API'),
)('https_spiffe with the SVID from a Workload API socket (go-spiffe generated server)', () => {
  const stop = new AbortController();
  let dir: string;
  let ca: IssuedCert;
  let server: WorkloadApiServer;
  let client: WorkloadApiClient;
  let creds: WorkloadApiSvidCredentials;
  let ep: RunningBundleEndpoint;
  let source: FakeBundleGetter;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-wl-'));
    ca = await makeCa();
    server = await startWorkloadApiServer(
      ID.toString(),
      await createX509Svid({ id: ID, issuer: ca, notBefore, notAfter }),
      ca,
    );
    client = new WorkloadApiClient({ address: `unix://${server.socketPath}`, minBackoffMs: 50 });
    creds = new WorkloadApiSvidCredentials({ stream: client, spiffeId: ID });
    source = new FakeBundleGetter(await makeBundle({ cas: [ca], sequence: 3n }));
    const local = new LocalBundle({ source, trustDomain: LOCAL_TD });
    await local.refresh();
    ep = await startBundleEndpoint({ host: '127.0.0.1', port: 0, local, credentials: creds }, stop.signal);
  });
  afterAll(async () => {
    stop.abort();
    await ep?.closed;
    client?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('go-spiffe fetches our bundle, authenticating the endpoint by the streamed SVID', async () => {
    const bootstrap = join(dir, 'bundle.json');
    await writeFile(bootstrap, marshalBundle(source.bundle!));
    const got = await goFetch(LOCAL_TD.name, ep.url, {
      profile: 'https_spiffe',
      endpointId: ID.toString(),
      bundleFile: bootstrap,
    });
    expect(got.sequence).toBe(3n);
  });

  it('presents the rotated SVID to new connections once the agent streams it', async () => {
    const next = await createX509Svid({ id: ID, issuer: ca, notBefore, notAfter });
    await server.serve(next, ca);
    for (let i = 0; i < 300 && creds.current()?.leaf.serialNumber !== next.certificate.serialNumber; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const serial = await new Promise<string>((resolve, reject) => {
      const req = request(
        ep.url,
        { ca: ca.pem, agent: false, checkServerIdentity: () => undefined },
        (res) => {
          resolve((res.socket as TLSSocket).getPeerCertificate().serialNumber);
          res.resume();
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(serial.toLowerCase()).toBe(next.certificate.serialNumber.toLowerCase());
  });
});
