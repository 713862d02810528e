/**
 * A SPIRE emulator in a process of its own, for benchmarks whose own process must stay
 * responsive: in the scale bench, three in-process emulators storing a 4,000-bundle
 * BatchSetFederatedBundle each blocked the bench's event loop for ~9 s, and with it the synthetic
 * peer fleet served from that loop — stalling the broker's cold start for reasons no real fleet
 * has (peers and SPIRE servers are separate processes, usually separate machines).
 *
 * Usage (forked with IPC): node emulator-child.js <trust domain> <socket path>. Sends
 * `{ type: 'listening', address }`; answers `{ id, type: 'count' | 'sequenceOf' | 'batchSetCalls',
 * td? }` with `{ id, value }`; `{ type: 'stop' }` stops it.
 * @module
 */
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';

const [trustDomain, socketPath] = process.argv.slice(2);
if (!trustDomain || !socketPath) throw new Error('usage: emulator-child.js <trust domain> <socket path>');
const send = (m: unknown): void => {
  process.send?.(m);
};
const emulator = new SpireEmulator({ trustDomain, socketPath });
const ep = await emulator.start();
send({ type: 'listening', address: ep.address });

process.on('message', (m: { id?: number; type: string; td?: string }) => {
  if (m.type === 'stop') {
    void emulator.stop().finally(() => process.exit(0));
    return;
  }
  let value: number | string | undefined;
  if (m.type === 'count') value = emulator.datastore.countBundles() - 1;
  else if (m.type === 'sequenceOf') value = emulator.federatedBundle(m.td!)?.sequence.toString();
  else if (m.type === 'batchSetCalls')
    value = emulator.calls.filter((c) => c.method === 'BatchSetFederatedBundle').length;
  send({ id: m.id, value });
});
process.on('disconnect', () => process.exit(0));
