import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { ConfigValidationError, parseAllowlist } from '../../../src/engine/config/index.js';

const peer = (extra = '') => `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: a.example
    bundleEndpoint:
      urls: [https://a.example/b]
      profile: https_web
${extra}`;
const parse = (text: string) =>
  parseAllowlist(text, { localTrustDomain: TrustDomain.parse('example.org'), serverNames: ['main'] });

describe('allowlist: relay', () => {
  it('is off by default', () => {
    expect(parse(peer()).peers[0]!.relay).toBeUndefined();
    expect(parse(peer('    relay: false\n')).peers[0]!.relay).toBeUndefined();
  });

  it('is enabled per peer with relay: true', () => {
    expect(parse(peer('    relay: true\n')).peers[0]!.relay).toBe(true);
  });

  it('must be a boolean', () => {
    expect(() => parse(peer('    relay: yes-please\n'))).toThrow(ConfigValidationError);
  });

  it('agrees with deploy/schema/allowlist.schema.json', () => {
    const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
    const schema = ajv.compile(JSON.parse(readFileSync('deploy/schema/allowlist.schema.json', 'utf8')));
    expect(schema(parseYaml(peer('    relay: true\n')))).toBe(true);
    expect(schema(parseYaml(peer('    relay: 1\n')))).toBe(false);
  });
});

describe('allowlist: oidcIssuer', () => {
  it('is absent by default and read when set', () => {
    expect(parse(peer()).peers[0]!.oidcIssuer).toBeUndefined();
    expect(parse(peer('    oidcIssuer: https://oidc.a.example\n')).peers[0]!.oidcIssuer).toBe(
      'https://oidc.a.example',
    );
  });

  it.each(['http://oidc.a.example', 'https://oidc.a.example/', 'oidc.a.example'])('refuses %s', (issuer) => {
    try {
      parse(peer(`    oidcIssuer: ${issuer}\n`));
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigValidationError).issues.map((i) => i.code)).toEqual(['ERR_CONFIG_URL']);
    }
  });

  it('agrees with deploy/schema/allowlist.schema.json', () => {
    const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
    const schema = ajv.compile(JSON.parse(readFileSync('deploy/schema/allowlist.schema.json', 'utf8')));
    expect(schema(parseYaml(peer('    oidcIssuer: https://oidc.a.example\n')))).toBe(true);
    expect(schema(parseYaml(peer('    oidcIssuer: http://oidc.a.example\n')))).toBe(false);
    expect(schema(parseYaml(peer('    oidcIssuer: https://oidc.a.example/\n')))).toBe(false);
  });
});
