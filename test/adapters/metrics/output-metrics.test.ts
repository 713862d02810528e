import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BrokerMetrics } from '../../../src/adapters/metrics/broker-metrics.js';
import { FakeClock } from '../../fakes/fake-clock.js';

describe('BrokerMetrics: file outputs', () => {
  it('counts files by format and result and times passes', async () => {
    const registry = new Registry();
    const m = new BrokerMetrics({ registry, clock: new FakeClock() });
    m.observeOutputFile({ format: 'grpc-bundle-map', result: 'written' });
    m.observeOutputFile({ format: 'grpc-bundle-map', result: 'written' });
    m.observeOutputFile({ format: 'pem', result: 'error' });
    m.observeOutputPass({ output: 'files', durationSeconds: 0.004 });
    const text = await registry.metrics();
    expect(text).toContain(
      'spiffe_broker_output_file_write_total{format="grpc-bundle-map",result="written"} 2',
    );
    expect(text).toContain('spiffe_broker_output_file_write_total{format="pem",result="error"} 1');
    expect(text).toContain('spiffe_broker_output_pass_duration_seconds_bucket{le="0.005",output="files"} 1');
  });
});
