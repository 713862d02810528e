/**
 * Wire compatibility of proto/ with SPIRE v1.15's server API: every message, field, enum value and
 * RPC the broker relies on is checked against the *loaded descriptors* (what @grpc/proto-loader
 * produced from our .proto files), not against their text. The expected values are facts read
 * from spire-api-sdk v1.15.x (proto/spire/api/...), written down here by hand.
 */
import descriptorModule from 'protobufjs/ext/descriptor/index.js';
import { describe, expect, it } from 'vitest';
import { loadSpireApi, SERVICE_NAMES } from '../../../src/adapters/spire/proto.js';

type Label = 'opt' | 'rep';
/** [name, number, type, label, message/enum type (simple name), oneof name] */
type FieldSpec = readonly [string, number, string, Label, string?, string?];

interface DecodedField {
  name: string;
  number: number;
  type: string;
  label: string;
  typeName?: string;
  oneofIndex?: number;
}
interface DecodedMessage {
  name: string;
  field?: DecodedField[];
  nestedType?: DecodedMessage[];
  enumType?: { name: string; value: { name: string; number: number }[] }[];
  oneofDecl?: { name: string }[];
}
interface DecodedFile {
  package: string;
  messageType?: DecodedMessage[];
  service?: { name: string; method: { name: string; inputType: string; outputType: string }[] }[];
}

const descriptor = descriptorModule as unknown as {
  FileDescriptorProto: {
    decode(b: Uint8Array): unknown;
    toObject(m: unknown, o: { enums: StringConstructor }): DecodedFile;
  };
};

const api = loadSpireApi();

// Index every message (nested ones as Parent.Child) of every loaded file by full name.
const messages = new Map<string, DecodedMessage>();
const services = new Map<string, Map<string, { input: string; output: string }>>();
for (const def of Object.values(api.packageDefinition)) {
  const protos = (def as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos;
  if (protos === undefined) continue;
  for (const buf of protos) {
    const file = descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(buf), {
      enums: String,
    });
    const add = (prefix: string, m: DecodedMessage) => {
      messages.set(`${prefix}.${m.name}`, m);
      for (const n of m.nestedType ?? []) add(`${prefix}.${m.name}`, n);
    };
    for (const m of file.messageType ?? []) add(file.package, m);
    for (const s of file.service ?? []) {
      const methods = new Map<string, { input: string; output: string }>();
      for (const m of s.method) methods.set(m.name, { input: m.inputType, output: m.outputType });
      services.set(`${file.package}.${s.name}`, methods);
    }
  }
}

function fieldsOf(fullName: string): FieldSpec[] {
  const m = messages.get(fullName);
  if (m === undefined) throw new Error(`message ${fullName} is not defined`);
  return (m.field ?? []).map((f) => {
    const label: Label = f.label === 'LABEL_REPEATED' ? 'rep' : 'opt';
    const type = f.type.replace(/^TYPE_/, '').toLowerCase();
    const spec: [string, number, string, Label, string?, string?] = [f.name, f.number, type, label];
    if (f.typeName) spec.push(f.typeName.split('.').pop());
    if (f.oneofIndex !== undefined) {
      if (spec.length === 4) spec.push(undefined);
      spec.push(m.oneofDecl?.[f.oneofIndex]?.name);
    }
    return spec;
  });
}

const T = 'spire.api.types';
const B = 'spire.api.server.bundle.v1';
const TD = 'spire.api.server.trustdomain.v1';
const S = 'spire.api.server.svid.v1';
const H = 'grpc.health.v1';

const resultOf = (inner: FieldSpec): FieldSpec[] => [['status', 1, 'message', 'opt', 'Status'], inner];

const EXPECTED: Record<string, FieldSpec[]> = {
  [`${T}.Bundle`]: [
    ['trust_domain', 1, 'string', 'opt'],
    ['x509_authorities', 2, 'message', 'rep', 'X509Certificate'],
    ['jwt_authorities', 3, 'message', 'rep', 'JWTKey'],
    ['refresh_hint', 4, 'int64', 'opt'],
    ['sequence_number', 5, 'uint64', 'opt'],
    ['wit_authorities', 6, 'message', 'rep', 'WITKey'],
  ],
  [`${T}.X509Certificate`]: [
    ['asn1', 1, 'bytes', 'opt'],
    ['tainted', 2, 'bool', 'opt'],
  ],
  [`${T}.JWTKey`]: [
    ['public_key', 1, 'bytes', 'opt'],
    ['key_id', 2, 'string', 'opt'],
    ['expires_at', 3, 'int64', 'opt'],
    ['tainted', 4, 'bool', 'opt'],
  ],
  [`${T}.WITKey`]: [
    ['public_key', 1, 'bytes', 'opt'],
    ['key_id', 2, 'string', 'opt'],
    ['expires_at', 3, 'int64', 'opt'],
    ['tainted', 4, 'bool', 'opt'],
  ],
  [`${T}.BundleMask`]: [
    ['x509_authorities', 2, 'bool', 'opt'],
    ['jwt_authorities', 3, 'bool', 'opt'],
    ['refresh_hint', 4, 'bool', 'opt'],
    ['sequence_number', 5, 'bool', 'opt'],
    ['wit_authorities', 6, 'bool', 'opt'],
  ],
  [`${T}.Status`]: [
    ['code', 1, 'int32', 'opt'],
    ['message', 2, 'string', 'opt'],
  ],
  [`${T}.FederationRelationship`]: [
    ['trust_domain', 1, 'string', 'opt'],
    ['bundle_endpoint_url', 2, 'string', 'opt'],
    ['https_web', 3, 'message', 'opt', 'HTTPSWebProfile', 'bundle_endpoint_profile'],
    ['https_spiffe', 4, 'message', 'opt', 'HTTPSSPIFFEProfile', 'bundle_endpoint_profile'],
    ['trust_domain_bundle', 5, 'message', 'opt', 'Bundle'],
  ],
  [`${T}.HTTPSSPIFFEProfile`]: [['endpoint_spiffe_id', 1, 'string', 'opt']],
  [`${T}.HTTPSWebProfile`]: [],
  [`${T}.FederationRelationshipMask`]: [
    ['bundle_endpoint_url', 1, 'bool', 'opt'],
    ['bundle_endpoint_profile', 2, 'bool', 'opt'],
    ['trust_domain_bundle', 3, 'bool', 'opt'],
  ],
  [`${T}.SPIFFEID`]: [
    ['trust_domain', 1, 'string', 'opt'],
    ['path', 2, 'string', 'opt'],
  ],
  [`${T}.X509SVID`]: [
    ['cert_chain', 1, 'bytes', 'rep'],
    ['id', 2, 'message', 'opt', 'SPIFFEID'],
    ['expires_at', 3, 'int64', 'opt'],
    ['hint', 4, 'string', 'opt'],
  ],
  [`${B}.CountBundlesRequest`]: [],
  [`${B}.CountBundlesResponse`]: [['count', 1, 'int32', 'opt']],
  [`${B}.GetBundleRequest`]: [['output_mask', 1, 'message', 'opt', 'BundleMask']],
  [`${B}.AppendBundleRequest`]: [
    ['x509_authorities', 1, 'message', 'rep', 'X509Certificate'],
    ['jwt_authorities', 2, 'message', 'rep', 'JWTKey'],
    ['output_mask', 3, 'message', 'opt', 'BundleMask'],
    ['wit_authorities', 4, 'message', 'rep', 'WITKey'],
  ],
  [`${B}.ListFederatedBundlesRequest`]: [
    ['output_mask', 1, 'message', 'opt', 'BundleMask'],
    ['page_size', 2, 'int32', 'opt'],
    ['page_token', 3, 'string', 'opt'],
  ],
  [`${B}.ListFederatedBundlesResponse`]: [
    ['bundles', 1, 'message', 'rep', 'Bundle'],
    ['next_page_token', 2, 'string', 'opt'],
  ],
  [`${B}.GetFederatedBundleRequest`]: [
    ['trust_domain', 1, 'string', 'opt'],
    ['output_mask', 2, 'message', 'opt', 'BundleMask'],
  ],
  [`${B}.BatchCreateFederatedBundleRequest`]: [
    ['bundle', 1, 'message', 'rep', 'Bundle'],
    ['output_mask', 2, 'message', 'opt', 'BundleMask'],
  ],
  [`${B}.BatchCreateFederatedBundleResponse`]: [['results', 1, 'message', 'rep', 'Result']],
  [`${B}.BatchCreateFederatedBundleResponse.Result`]: resultOf(['bundle', 2, 'message', 'opt', 'Bundle']),
  [`${B}.BatchUpdateFederatedBundleRequest`]: [
    ['bundle', 1, 'message', 'rep', 'Bundle'],
    ['input_mask', 2, 'message', 'opt', 'BundleMask'],
    ['output_mask', 3, 'message', 'opt', 'BundleMask'],
  ],
  [`${B}.BatchUpdateFederatedBundleResponse`]: [['results', 1, 'message', 'rep', 'Result']],
  [`${B}.BatchUpdateFederatedBundleResponse.Result`]: resultOf(['bundle', 2, 'message', 'opt', 'Bundle']),
  [`${B}.BatchSetFederatedBundleRequest`]: [
    ['bundle', 1, 'message', 'rep', 'Bundle'],
    ['output_mask', 2, 'message', 'opt', 'BundleMask'],
  ],
  [`${B}.BatchSetFederatedBundleResponse`]: [['results', 1, 'message', 'rep', 'Result']],
  [`${B}.BatchSetFederatedBundleResponse.Result`]: resultOf(['bundle', 2, 'message', 'opt', 'Bundle']),
  [`${B}.BatchDeleteFederatedBundleRequest`]: [
    ['trust_domains', 1, 'string', 'rep'],
    ['mode', 2, 'enum', 'opt', 'Mode'],
  ],
  [`${B}.BatchDeleteFederatedBundleResponse`]: [['results', 1, 'message', 'rep', 'Result']],
  [`${B}.BatchDeleteFederatedBundleResponse.Result`]: resultOf(['trust_domain', 2, 'string', 'opt']),
  [`${TD}.ListFederationRelationshipsRequest`]: [
    ['output_mask', 1, 'message', 'opt', 'FederationRelationshipMask'],
    ['page_size', 2, 'int32', 'opt'],
    ['page_token', 3, 'string', 'opt'],
  ],
  [`${TD}.ListFederationRelationshipsResponse`]: [
    ['federation_relationships', 1, 'message', 'rep', 'FederationRelationship'],
    ['next_page_token', 2, 'string', 'opt'],
  ],
  [`${TD}.GetFederationRelationshipRequest`]: [
    ['trust_domain', 1, 'string', 'opt'],
    ['output_mask', 2, 'message', 'opt', 'FederationRelationshipMask'],
  ],
  [`${TD}.BatchCreateFederationRelationshipRequest`]: [
    ['federation_relationships', 1, 'message', 'rep', 'FederationRelationship'],
    ['output_mask', 2, 'message', 'opt', 'FederationRelationshipMask'],
  ],
  [`${TD}.BatchCreateFederationRelationshipResponse.Result`]: resultOf([
    'federation_relationship',
    2,
    'message',
    'opt',
    'FederationRelationship',
  ]),
  [`${TD}.BatchUpdateFederationRelationshipRequest`]: [
    ['federation_relationships', 1, 'message', 'rep', 'FederationRelationship'],
    ['input_mask', 2, 'message', 'opt', 'FederationRelationshipMask'],
    ['output_mask', 3, 'message', 'opt', 'FederationRelationshipMask'],
  ],
  [`${TD}.BatchDeleteFederationRelationshipRequest`]: [['trust_domains', 1, 'string', 'rep']],
  [`${TD}.BatchDeleteFederationRelationshipResponse.Result`]: resultOf(['trust_domain', 2, 'string', 'opt']),
  [`${TD}.RefreshBundleRequest`]: [['trust_domain', 1, 'string', 'opt']],
  [`${S}.MintX509SVIDRequest`]: [
    ['csr', 1, 'bytes', 'opt'],
    ['ttl', 2, 'int32', 'opt'],
  ],
  [`${S}.MintX509SVIDResponse`]: [['svid', 1, 'message', 'opt', 'X509SVID']],
  [`${H}.HealthCheckRequest`]: [['service', 1, 'string', 'opt']],
  [`${H}.HealthCheckResponse`]: [['status', 1, 'enum', 'opt', 'ServingStatus']],
};

const EXPECTED_ENUMS: Record<string, Record<string, [string, number][]>> = {
  [`${B}.BatchDeleteFederatedBundleRequest`]: {
    Mode: [
      ['RESTRICT', 0],
      ['DELETE', 1],
      ['DISSOCIATE', 2],
    ],
  },
  [`${H}.HealthCheckResponse`]: {
    ServingStatus: [
      ['UNKNOWN', 0],
      ['SERVING', 1],
      ['NOT_SERVING', 2],
      ['SERVICE_UNKNOWN', 3],
    ],
  },
};

/** service → method → [request type, response type] (fully qualified, leading dot). */
const EXPECTED_RPCS: Record<string, Record<string, [string, string]>> = {
  [SERVICE_NAMES.bundle]: {
    CountBundles: [`.${B}.CountBundlesRequest`, `.${B}.CountBundlesResponse`],
    GetBundle: [`.${B}.GetBundleRequest`, `.${T}.Bundle`],
    AppendBundle: [`.${B}.AppendBundleRequest`, `.${T}.Bundle`],
    ListFederatedBundles: [`.${B}.ListFederatedBundlesRequest`, `.${B}.ListFederatedBundlesResponse`],
    GetFederatedBundle: [`.${B}.GetFederatedBundleRequest`, `.${T}.Bundle`],
    BatchCreateFederatedBundle: [
      `.${B}.BatchCreateFederatedBundleRequest`,
      `.${B}.BatchCreateFederatedBundleResponse`,
    ],
    BatchUpdateFederatedBundle: [
      `.${B}.BatchUpdateFederatedBundleRequest`,
      `.${B}.BatchUpdateFederatedBundleResponse`,
    ],
    BatchSetFederatedBundle: [
      `.${B}.BatchSetFederatedBundleRequest`,
      `.${B}.BatchSetFederatedBundleResponse`,
    ],
    BatchDeleteFederatedBundle: [
      `.${B}.BatchDeleteFederatedBundleRequest`,
      `.${B}.BatchDeleteFederatedBundleResponse`,
    ],
  },
  [SERVICE_NAMES.trustDomain]: {
    ListFederationRelationships: [
      `.${TD}.ListFederationRelationshipsRequest`,
      `.${TD}.ListFederationRelationshipsResponse`,
    ],
    GetFederationRelationship: [`.${TD}.GetFederationRelationshipRequest`, `.${T}.FederationRelationship`],
    BatchCreateFederationRelationship: [
      `.${TD}.BatchCreateFederationRelationshipRequest`,
      `.${TD}.BatchCreateFederationRelationshipResponse`,
    ],
    BatchUpdateFederationRelationship: [
      `.${TD}.BatchUpdateFederationRelationshipRequest`,
      `.${TD}.BatchUpdateFederationRelationshipResponse`,
    ],
    BatchDeleteFederationRelationship: [
      `.${TD}.BatchDeleteFederationRelationshipRequest`,
      `.${TD}.BatchDeleteFederationRelationshipResponse`,
    ],
    RefreshBundle: [`.${TD}.RefreshBundleRequest`, '.google.protobuf.Empty'],
  },
  [SERVICE_NAMES.svid]: {
    MintX509SVID: [`.${S}.MintX509SVIDRequest`, `.${S}.MintX509SVIDResponse`],
  },
  [SERVICE_NAMES.health]: {
    Check: [`.${H}.HealthCheckRequest`, `.${H}.HealthCheckResponse`],
  },
};

describe('proto/ descriptors (wire compatibility with SPIRE v1.15)', () => {
  it('loads the four services', () => {
    expect(Object.keys(api.bundle)).toContain('BatchSetFederatedBundle');
    expect(Object.keys(api.trustDomain)).toContain('GetFederationRelationship');
    expect(Object.keys(api.svid)).toContain('MintX509SVID');
    expect(Object.keys(api.health)).toContain('Check');
    expect(messages.size).toBeGreaterThan(40);
  });

  for (const [name, fields] of Object.entries(EXPECTED)) {
    it(`${name} has SPIRE's fields, numbers, types and labels`, () => {
      expect(fieldsOf(name)).toEqual(fields);
    });
  }

  for (const [name, enums] of Object.entries(EXPECTED_ENUMS)) {
    it(`${name} has SPIRE's enum values`, () => {
      const m = messages.get(name);
      for (const [enumName, values] of Object.entries(enums)) {
        const e = m?.enumType?.find((x) => x.name === enumName);
        expect(e?.value.map((v) => [v.name, v.number])).toEqual(values);
      }
    });
  }

  for (const [svc, methods] of Object.entries(EXPECTED_RPCS)) {
    it(`${svc} defines the RPCs with SPIRE's request/response types and paths`, () => {
      const loaded = services.get(svc);
      expect(loaded).toBeDefined();
      for (const [method, [input, output]] of Object.entries(methods)) {
        expect(loaded?.get(method), `${svc}/${method}`).toEqual({ input, output });
      }
      const def =
        svc === SERVICE_NAMES.bundle
          ? api.bundle
          : svc === SERVICE_NAMES.trustDomain
            ? api.trustDomain
            : svc === SERVICE_NAMES.svid
              ? api.svid
              : api.health;
      for (const method of Object.keys(methods)) {
        expect(def[method]?.path).toBe(`/${svc}/${method}`);
        expect(def[method]?.requestStream).toBe(false);
        expect(def[method]?.responseStream).toBe(false);
      }
    });
  }

  it('encodes int64/uint64 as decimal strings without loss (uint64 max round-trips)', () => {
    const m = api.bundle.GetBundle!;
    const max = '18446744073709551615';
    const bytes = m.responseSerialize({ trust_domain: 'x', sequence_number: max, refresh_hint: '-5' });
    const back = m.responseDeserialize(bytes) as { sequence_number: string; refresh_hint: string };
    expect(back.sequence_number).toBe(max);
    expect(back.refresh_hint).toBe('-5');
  });

  it('decodes a present, zero-length https_web (SPIRE encodes it as 1a 00) as the selected profile', () => {
    const m = api.trustDomain.GetFederationRelationship!;
    // field 1 "td", field 3 (https_web) with length 0
    const wire = Buffer.from([0x0a, 0x02, 0x74, 0x64, 0x1a, 0x00]);
    const rel = m.responseDeserialize(wire) as Record<string, unknown>;
    expect(rel.bundle_endpoint_profile).toBe('https_web');
    expect(rel.https_web).toEqual({});
    // and we produce the same bytes when selecting https_web
    expect(Buffer.from(m.responseSerialize({ trust_domain: 'td', https_web: {} }))).toEqual(wire);
  });

  it('leaves absent messages null and scalars at their defaults', () => {
    const m = api.bundle.BatchSetFederatedBundle!;
    const res = m.responseDeserialize(
      m.responseSerialize({ results: [{ status: { code: 3, message: 'bad' } }] }),
    ) as { results: { status: unknown; bundle: unknown }[] };
    expect(res.results[0]).toEqual({ status: { code: 3, message: 'bad' }, bundle: null });
  });
});
