import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createCa } from '../../../src/adapters/pki/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { ConfigValidationError, parseBrokerConfig } from '../../../src/engine/config/index.js';
import { checkReferencedFiles } from '../../../src/engine/config/referenced-files.js';

const MINIMAL = `apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: example.org
stateDir: /var/lib/spiffe-broker
spire:
  servers:
    - name: main
      address: unix:///run/spire/server/private/api.sock
allowlist:
  file: /etc/spiffe-broker/allowlist.yaml
`;

function issues(text: string): { path: string; code: string; message: string }[] {
  try {
    parseBrokerConfig(text);
  } catch (err) {
    if (err instanceof ConfigValidationError) return err.issues.map((i) => ({ ...i }));
    throw err;
  }
  throw new Error('expected a ConfigValidationError');
}

describe('broker config: oidc', () => {
  it('is absent by default', () => {
    expect(parseBrokerConfig(MINIMAL).oidc).toBeUndefined();
  });

  it('reads plain HTTP on loopback with defaults', () => {
    const c = parseBrokerConfig(
      `${MINIMAL}oidc:\n  listen: 127.0.0.1:8444\n  issuer: https://oidc.example.org\n`,
    );
    expect(c.oidc).toEqual({
      listen: { host: '127.0.0.1', port: 8444 },
      issuer: 'https://oidc.example.org',
      maxAgeSeconds: 60,
    });
  });

  it('reads HTTPS with every option', () => {
    const c = parseBrokerConfig(
      `${MINIMAL}oidc:\n  listen: 0.0.0.0:443\n  issuer: https://idp.example.org/td\n  jwksUri: https://idp.example.org/td/jwks.json\n  certFile: /tls/tls.crt\n  keyFile: /tls/tls.key\n  maxAge: 5m\n`,
    );
    expect(c.oidc).toEqual({
      listen: { host: '0.0.0.0', port: 443 },
      issuer: 'https://idp.example.org/td',
      jwksUri: 'https://idp.example.org/td/jwks.json',
      certFile: '/tls/tls.crt',
      keyFile: '/tls/tls.key',
      maxAgeSeconds: 300,
    });
  });

  it('refuses plain HTTP off loopback', () => {
    expect(issues(`${MINIMAL}oidc:\n  listen: 0.0.0.0:8444\n  issuer: https://oidc.example.org\n`)).toEqual([
      expect.objectContaining({ code: 'ERR_CONFIG_ADDRESS', message: expect.stringMatching(/not loopback/) }),
    ]);
  });

  it.each([
    ['http://oidc.example.org', /https/],
    ['https://oidc.example.org/', /end with/],
    ['https://oidc.example.org?tenant=1', /query/],
  ])('refuses the issuer %s', (issuer, message) => {
    expect(issues(`${MINIMAL}oidc:\n  listen: 127.0.0.1:8444\n  issuer: ${issuer}\n`)).toEqual([
      expect.objectContaining({ code: 'ERR_CONFIG_URL', message: expect.stringMatching(message) }),
    ]);
  });

  it('refuses a missing issuer or listen, a lone certFile, an http jwksUri and unknown keys', () => {
    expect(
      issues(`${MINIMAL}oidc:\n  listen: 127.0.0.1:8444\n`)
        .map((i) => i.message)
        .join(),
    ).toMatch(/issuer/);
    expect(
      issues(`${MINIMAL}oidc:\n  issuer: https://a.example\n`)
        .map((i) => i.message)
        .join(),
    ).toMatch(/listen/);
    expect(
      issues(`${MINIMAL}oidc:\n  listen: 127.0.0.1:1\n  issuer: https://a.example\n  certFile: /c\n`).map(
        (i) => i.code,
      ),
    ).toContain('ERR_CONFIG_PROFILE');
    expect(
      issues(
        `${MINIMAL}oidc:\n  listen: 127.0.0.1:1\n  issuer: https://a.example\n  jwksUri: http://a.example/k\n`,
      ).map((i) => i.code),
    ).toEqual(['ERR_CONFIG_URL']);
    expect(
      issues(`${MINIMAL}oidc:\n  listen: 127.0.0.1:1\n  issuer: https://a.example\n  isuer: x\n`),
    ).toHaveLength(1);
  });
});

describe('deploy/schema/broker-config.schema.json agrees on oidc', () => {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
  const schema = ajv.compile(JSON.parse(readFileSync('deploy/schema/broker-config.schema.json', 'utf8')));
  const accepts = (text: string): boolean => {
    try {
      parseBrokerConfig(text);
      return true;
    } catch {
      return false;
    }
  };
  const o = (body: string) => `${MINIMAL}oidc:\n${body}`;
  it.each([
    {
      name: 'loopback HTTP',
      text: o('  listen: 127.0.0.1:8444\n  issuer: https://oidc.example.org\n'),
      valid: true,
    },
    {
      name: 'HTTPS, all options',
      text: o(
        '  listen: 0.0.0.0:443\n  issuer: https://idp.example.org/td\n  jwksUri: https://idp.example.org/td/k\n  certFile: /c\n  keyFile: /k\n  maxAge: 5m\n',
      ),
      valid: true,
    },
    { name: 'http issuer', text: o('  listen: 127.0.0.1:1\n  issuer: http://a.example\n'), valid: false },
    {
      name: 'issuer with slash',
      text: o('  listen: 127.0.0.1:1\n  issuer: https://a.example/\n'),
      valid: false,
    },
    {
      name: 'issuer with query',
      text: o('  listen: 127.0.0.1:1\n  issuer: https://a.example/?x\n'),
      valid: false,
    },
    { name: 'no issuer', text: o('  listen: 127.0.0.1:1\n'), valid: false },
    {
      name: 'lone keyFile',
      text: o('  listen: 127.0.0.1:1\n  issuer: https://a.example\n  keyFile: /k\n'),
      valid: false,
    },
    {
      name: 'unknown key',
      text: o('  listen: 127.0.0.1:1\n  issuer: https://a.example\n  port: 1\n'),
      valid: false,
    },
  ])('$name', ({ text, valid }) => {
    expect(schema(parseYaml(text))).toBe(valid);
    expect(accepts(text)).toBe(valid);
  });

  it('semantic rule beyond the schema: plain HTTP off loopback', () => {
    const text = o('  listen: 0.0.0.0:8444\n  issuer: https://a.example\n');
    expect(schema(parseYaml(text))).toBe(true);
    expect(accepts(text)).toBe(false);
  });
});

describe('check-config: the oidc certificate and key files', () => {
  it('reports a missing certFile and a key of another certificate at the oidc keys', async () => {
    const T0 = new Date('2026-01-01T00:00:00Z');
    const T1 = new Date('2036-01-01T00:00:00Z');
    const a = await createCa({ trustDomain: TrustDomain.parse('a.example'), notBefore: T0, notAfter: T1 });
    const b = await createCa({ trustDomain: TrustDomain.parse('b.example'), notBefore: T0, notAfter: T1 });
    const text = `${MINIMAL}oidc:\n  listen: 0.0.0.0:443\n  issuer: https://oidc.example.org\n  certFile: /tls/tls.crt\n  keyFile: /tls/tls.key\n`;
    const fsWith = (files: Record<string, string>) => ({
      readFile: async (p: string) => {
        const f = files[p];
        if (f === undefined) throw Object.assign(new Error(`ENOENT: open '${p}'`), { code: 'ENOENT' });
        return new TextEncoder().encode(f);
      },
    });
    const parsed = { kind: 'BrokerConfig' as const, config: parseBrokerConfig(text) };
    const opts = { text, followAllowlist: false };
    expect(
      await checkReferencedFiles(
        parsed,
        fsWith({ '/tls/tls.crt': a.pem, '/tls/tls.key': a.privateKeyPem! }),
        opts,
      ),
    ).toEqual([]);
    const mismatch = await checkReferencedFiles(
      parsed,
      fsWith({ '/tls/tls.crt': a.pem, '/tls/tls.key': b.privateKeyPem! }),
      opts,
    );
    expect(mismatch.map((i) => [i.path, i.code])).toEqual([['/oidc/keyFile', 'ERR_CONFIG_FILE']]);
    const missing = await checkReferencedFiles(parsed, fsWith({ '/tls/tls.key': a.privateKeyPem! }), opts);
    expect(missing.map((i) => i.path)).toEqual(['/oidc/certFile']);
  });
});
