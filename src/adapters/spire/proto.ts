import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';

/** The .proto files the broker loads, relative to the proto directory. */
export const SPIRE_PROTO_FILES: readonly string[] = Object.freeze([
  'spire/api/server/bundle/v1/bundle.proto',
  'spire/api/server/trustdomain/v1/trustdomain.proto',
  'spire/api/server/svid/v1/svid.proto',
  'grpc/health/v1/health.proto',
]);

/**
 * How messages map to JavaScript. Field names stay snake_case as on the wire; int64/uint64 are
 * decimal strings (never lossy numbers); enums are their names; absent scalars get their proto3
 * defaults and absent messages are `null`; each oneof gets a discriminator property naming the
 * member that is set.
 */
export const PROTO_LOADER_OPTIONS: Readonly<Options> = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

/** Fully-qualified service names. */
export const SERVICE_NAMES = Object.freeze({
  bundle: 'spire.api.server.bundle.v1.Bundle',
  trustDomain: 'spire.api.server.trustdomain.v1.TrustDomain',
  svid: 'spire.api.server.svid.v1.SVID',
  health: 'grpc.health.v1.Health',
} as const);

/** The loaded SPIRE server API: the raw package definition and the four services. */
export interface SpireApiDefinition {
  readonly packageDefinition: PackageDefinition;
  readonly bundle: ServiceDefinition;
  readonly trustDomain: ServiceDefinition;
  readonly svid: ServiceDefinition;
  readonly health: ServiceDefinition;
}

/**
 * The `proto/` directory shipped with the package. Both `src/adapters/spire/proto.ts` and
 * `dist/spire/proto.js` sit two levels below the package root.
 */
export function defaultProtoDir(): string {
  return fileURLToPath(new URL('../../../proto/', import.meta.url));
}

function service(def: PackageDefinition, name: string): ServiceDefinition {
  const s = def[name];
  if (s === undefined || 'format' in s) {
    throw new TypeError(`proto definitions do not define the service ${name}`);
  }
  return s as unknown as ServiceDefinition;
}

/**
 * Loads the SPIRE server API definitions (synchronously reads the .proto files). Call it once and
 * share the result between clients and emulators; nothing is loaded at import time.
 *
 * @param options.protoDir directory holding `spire/api/...` and `grpc/health/...`; defaults to
 *   {@link defaultProtoDir}.
 */
export function loadSpireApi(options: { protoDir?: string } = {}): SpireApiDefinition {
  const protoDir = options.protoDir ?? defaultProtoDir();
  const packageDefinition = loadSync([...SPIRE_PROTO_FILES], {
    ...PROTO_LOADER_OPTIONS,
    includeDirs: [protoDir],
  });
  return {
    packageDefinition,
    bundle: service(packageDefinition, SERVICE_NAMES.bundle),
    trustDomain: service(packageDefinition, SERVICE_NAMES.trustDomain),
    svid: service(packageDefinition, SERVICE_NAMES.svid),
    health: service(packageDefinition, SERVICE_NAMES.health),
  };
}
