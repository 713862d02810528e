/**
 * One contract, two targets: the same assertions (contract-suite.ts) against the in-process
 * emulator and against a real spire-server v1.15.3 started by the harness. Without the binary the
 * real-SPIRE half skips loudly (fails with CI=true).
 */
import { SpireEmulator } from '../../../src/adapters/spire/emulator/index.js';
import { realSpireOrSkip, startSpireServer } from '../../support/spire-harness.js';
import { defineSpireContract } from './contract-suite.js';

const TD = 'contract.test';
const ADMIN = `spiffe://${TD}/admin`;

defineSpireContract('emulator', async () => {
  const emu = new SpireEmulator({ trustDomain: TD, tcp: { adminIds: [ADMIN] } });
  const ep = await emu.start();
  return {
    kind: 'emulator',
    trustDomain: TD,
    address: ep.address,
    tcpAddress: ep.tcpAddress!,
    adminId: ADMIN,
    mintSvid: (id) => emu.mintX509Svid(id),
    prepareAuthority: async (kind) =>
      (kind === 'x509' ? await emu.prepareX509Authority() : emu.prepareJwtAuthority()).authorityId,
    activateAuthority: async (kind) => {
      if (kind === 'x509') await emu.activateX509Authority();
      else emu.activateJwtAuthority();
    },
    stop: () => emu.stop(),
  };
});

if (await realSpireOrSkip('SPIRE server API contract: real spire-server')) {
  defineSpireContract('real spire-server 1.15.3', async () => {
    const s = await startSpireServer({ trustDomain: TD, adminIds: [ADMIN] });
    return {
      kind: 'spire-server',
      trustDomain: TD,
      address: s.address,
      tcpAddress: s.tcpAddress,
      adminId: ADMIN,
      mintSvid: (id) => s.x509Mint(id),
      prepareAuthority: (kind) => s.prepareAuthority(kind),
      activateAuthority: (kind, id) => s.activateAuthority(kind, id),
      stop: () => s.stop(),
    };
  });
}
