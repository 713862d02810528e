import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type BrokerStatus, buildAdminApp } from '../../../src/adapters/admin/index.js';
import { BrokerMetrics, createMetricsRegistry } from '../../../src/adapters/metrics/index.js';
import { TrustBundle } from '../../../src/core/bundle/index.js';
import { FileOutputSink } from '../../../src/engine/publish/file-output.js';
import { makePki, T0 } from '../../support/fixtures.js';
import { STATUS } from './fixtures.js';

describe('/v1/status outputs', () => {
  it('serves each file output format with its last write, last error and omitted domains', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'status-outputs-'));
    try {
      const [a, b] = await Promise.all([makePki('a.test'), makePki('b.test')]);
      const jwtOnly = TrustBundle.create({
        trustDomain: b.td,
        jwtAuthorities: [...b.bundle.jwtAuthorities.values()],
      });
      // The pem output cannot write: its target directory is a file.
      writeFileSync(join(dir, 'blocked'), 'x');
      const ok = new FileOutputSink({ dir: join(dir, 'out'), formats: ['grpc-bundle-map'] });
      const broken = new FileOutputSink({ dir: join(dir, 'blocked'), formats: ['pem'] });
      const desired = {
        bundles: new Map([
          ['a.test', a.bundle],
          ['b.test', jwtOnly],
        ]),
        retained: new Set<string>(),
      };
      await ok.apply(desired);
      await broken.apply(desired);
      const status: BrokerStatus = { ...STATUS, outputs: { files: [...ok.status(), ...broken.status()] } };
      const app = buildAdminApp({
        status: () => status,
        ready: () => ({ ready: true, reasons: [] }),
        metrics: new BrokerMetrics({ registry: createMetricsRegistry(), clock: { now: () => T0 } }),
        bundles: () => [],
        adminToken: 'admin-token-for-tests-0123456789abcdefghijkl',
      });
      const body = (await app.inject('/v1/status')).json();
      expect(body.outputs.files).toEqual([
        {
          format: 'grpc-bundle-map',
          path: join(dir, 'out', 'grpc-bundle-map.json'),
          lastWrite: expect.any(String),
          lastError: null,
          trustDomains: ['a.test'],
          omitted: [{ trustDomain: 'b.test', reason: expect.stringMatching(/no X\.509 authority/) }],
        },
        {
          format: 'pem',
          path: join(dir, 'blocked', '<trust domain>.pem'),
          lastWrite: null,
          lastError: { code: 'ERR_OUTPUT_WRITE', message: expect.any(String), at: expect.any(String) },
          // Nothing could be written: no file lists a trust domain.
          trustDomains: [],
          omitted: [],
        },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
