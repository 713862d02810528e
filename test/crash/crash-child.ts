/**
 * A broker for the crash test: builds a BrokerDaemon from the config file given and runs it until
 * SIGTERM. Prints `running` once started, `refused <trust domain> <code>` for each refused peer
 * bundle, and `accepted <trust domain> <sequence>` each time a peer bundle was accepted — which happens only after it was persisted — so the parent knows what
 * the state directory must hold at least, whenever it SIGKILLs this process.
 *
 * Usage: node crash-child.js <broker.yaml>
 */
import { readFileSync } from 'node:fs';
import { BrokerDaemon } from '../../src/daemon/daemon.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';

const config = parseBrokerConfig(readFileSync(process.argv[2]!, 'utf8'));
const daemon = await BrokerDaemon.create(config, {
  federationObserver: {
    accepted: (peer, bundle) => {
      // Synchronous on a pipe (Linux): once the parent reads it, it was true.
      process.stdout.write(`accepted ${peer.trustDomain.name} ${bundle.sequence}\n`);
    },
    refused: (peer, error) => {
      process.stdout.write(`refused ${peer.trustDomain.name} ${error.code}\n`);
    },
  },
});
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
process.stdout.write('running\n');
await daemon.run(stop.signal);
process.stdout.write('stopped\n');
