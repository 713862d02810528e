import { describe, expect, it } from 'vitest';
import { DEFAULT_SPIRE_SOCKET_PATH, parseSpireAddress } from '../../../src/adapters/spire/address.js';
import { DEFAULT_RETRY_POLICY, retryDelayMs } from '../../../src/adapters/spire/retry.js';
import {
  GRPC_STATUS,
  grpcStatusName,
  isRetryableStatus,
  spireErrorCodeFor,
} from '../../../src/adapters/spire/status.js';
import { SpireError } from '../../../src/errors.js';

describe('parseSpireAddress', () => {
  it('accepts unix sockets in both spellings', () => {
    expect(parseSpireAddress(`unix://${DEFAULT_SPIRE_SOCKET_PATH}`)).toEqual({
      kind: 'unix',
      path: DEFAULT_SPIRE_SOCKET_PATH,
      target: `unix://${DEFAULT_SPIRE_SOCKET_PATH}`,
    });
    expect(parseSpireAddress('unix:/run/spire/api.sock')).toMatchObject({
      kind: 'unix',
      path: '/run/spire/api.sock',
    });
  });

  it('accepts dns:///host:port, defaulting the port to 8081, with IPv6 literals', () => {
    expect(parseSpireAddress('dns:///spire.example:9000')).toEqual({
      kind: 'tcp',
      host: 'spire.example',
      port: 9000,
      target: 'dns:///spire.example:9000',
    });
    expect(parseSpireAddress('dns:///spire.example')).toMatchObject({ port: 8081 });
    expect(parseSpireAddress('dns:///[::1]:8081')).toEqual({
      kind: 'tcp',
      host: '::1',
      port: 8081,
      target: 'dns:///[::1]:8081',
    });
  });

  const bad: [string, RegExp][] = [
    ['unix:relative.sock', /must be absolute/],
    [`unix:///${'a'.repeat(120)}`, /longer than 107 bytes/],
    ['dns://authority/host:1', /use dns:\/\/\/host:port/],
    ['dns:///:8081', /host is missing/],
    ['dns:///h:0', /port "0" is not in 1\.\.65535/],
    ['dns:///h:99999', /port "99999"/],
    ['dns:///[::1', /unterminated IPv6/],
    ['https://spire:8081', /expected unix:\/\/\/path/],
    ['', /expected unix/],
  ];
  for (const [address, message] of bad) {
    it(`refuses ${JSON.stringify(address.slice(0, 40))}`, () => {
      try {
        parseSpireAddress(address);
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(SpireError);
        expect((err as SpireError).code).toBe('ERR_SPIRE_ADDRESS');
        expect((err as SpireError).message).toMatch(message);
      }
    });
  }
});

describe('retryDelayMs', () => {
  it('grows exponentially from the initial delay and caps', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => retryDelayMs(n))).toEqual([100, 200, 400, 800, 1600, 2000]);
    expect(retryDelayMs(3, { initialDelayMs: 10, multiplier: 3, maxDelayMs: 1000 })).toBe(90);
  });

  it('applies equal jitter within [50 %, 100 %]', () => {
    expect(retryDelayMs(2, {}, () => 0)).toBe(100);
    expect(retryDelayMs(2, {}, () => 0.5)).toBe(150);
    expect(retryDelayMs(2, {}, () => 7)).toBe(200);
    expect(DEFAULT_RETRY_POLICY.maxAttempts).toBe(4);
  });
});

describe('gRPC status mapping', () => {
  it('names codes and maps them to broker codes', () => {
    expect(grpcStatusName(5)).toBe('NOT_FOUND');
    expect(grpcStatusName(99)).toBe('UNKNOWN');
    expect(spireErrorCodeFor(GRPC_STATUS.NOT_FOUND)).toBe('ERR_SPIRE_NOT_FOUND');
    expect(spireErrorCodeFor(GRPC_STATUS.CANCELLED)).toBe('ERR_SPIRE_ABORTED');
    expect(spireErrorCodeFor(GRPC_STATUS.DATA_LOSS)).toBe('ERR_SPIRE_RPC');
    expect([...Array(17).keys()].filter(isRetryableStatus).map(grpcStatusName)).toEqual([
      'DEADLINE_EXCEEDED',
      'UNAVAILABLE',
    ]);
  });
});
