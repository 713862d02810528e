import { describe, expect, it } from 'vitest';
import { parseBrokerConfig } from '../../../src/engine/config/broker-config.js';
import { ConfigValidationError } from '../../../src/engine/config/config-error.js';
import { outputDirProblem } from '../../../src/engine/config/outputs-config.js';

const BASE = `apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: example.org
stateDir: /var/lib/b
spire:
  servers:
    - name: main
      address: unix:///run/spire.sock
allowlist: { file: /etc/al.yaml }
`;

function issues(text: string): string[] {
  try {
    parseBrokerConfig(text);
  } catch (err) {
    if (err instanceof ConfigValidationError)
      return err.issues.map((i) => `${i.line}:${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('broker.yaml outputs:', () => {
  it('reads the file outputs, includeLocal defaulting to false', () => {
    const c = parseBrokerConfig(
      `${BASE}outputs:\n  files:\n    dir: /var/run/spiffe-broker/bundles\n    formats: [grpc-bundle-map, envoy-bundle-map, pem, jwks]\n`,
    );
    expect(c.outputs).toEqual({
      files: {
        dir: '/var/run/spiffe-broker/bundles',
        formats: ['grpc-bundle-map', 'envoy-bundle-map', 'pem', 'jwks'],
        includeLocal: false,
      },
    });
    expect(parseBrokerConfig(BASE).outputs).toBeUndefined();
    expect(
      parseBrokerConfig(`${BASE}outputs: { files: { dir: /o, formats: [bundle-map], includeLocal: true } }\n`)
        .outputs?.files?.includeLocal,
    ).toBe(true);
  });

  it('says which format is wrong, on its line', () => {
    expect(
      issues(`${BASE}outputs:\n  files:\n    dir: /o\n    formats:\n      - pem\n      - grpc\n`),
    ).toEqual([
      expect.stringMatching(
        /^15:\/outputs\/files\/formats\/1: must be one of grpc-bundle-map, envoy-bundle-map/,
      ),
    ]);
    expect(issues(`${BASE}outputs: { files: { dir: /o, formats: [pem, pem] } }\n`)).toEqual([
      expect.stringMatching(/format pem is listed twice/),
    ]);
  });

  it('refuses an output directory that overlaps the state directory', () => {
    expect(issues(`${BASE}outputs: { files: { dir: /var/lib/b/, formats: [pem] } }\n`)).toEqual([
      expect.stringMatching(/overlaps stateDir/),
    ]);
    expect(outputDirProblem('/var/lib', '/var/lib/b')).toMatch(/overlaps/);
    expect(outputDirProblem('/var/lib/b/../b/x', '/var/lib/b')).toMatch(/overlaps/);
    expect(outputDirProblem('/var/lib/bundles', '/var/lib/b')).toBeUndefined();
  });
});
