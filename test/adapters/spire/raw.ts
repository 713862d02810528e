/**
 * A raw gRPC caller for the contract suite: sends requests the typed client cannot produce
 * (invalid trust domains, bad page tokens, unknown enum values, garbage authorities) and returns
 * the decoded response or the status, untouched.
 */
import { Client, credentials, Metadata, type MethodDefinition, type ServiceError } from '@grpc/grpc-js';
import { loadSpireApi, type SpireApiDefinition } from '../../../src/adapters/spire/proto.js';
import { type GrpcStatusName, grpcStatusName } from '../../../src/adapters/spire/status.js';

export type RawResult<T = Record<string, unknown>> =
  | { ok: true; value: T }
  | { ok: false; code: GrpcStatusName; message: string };

let shared: SpireApiDefinition | undefined;

/** Calls `service.method` on a unix-socket address with a plain object request. */
export async function rawCall<T = Record<string, unknown>>(
  address: string,
  service: 'bundle' | 'trustDomain' | 'svid' | 'health',
  method: string,
  request: object,
): Promise<RawResult<T>> {
  shared ??= loadSpireApi();
  const def = shared[service][method] as MethodDefinition<object, T> | undefined;
  if (!def) throw new TypeError(`no method ${service}.${method}`);
  const client = new Client(address, credentials.createInsecure());
  try {
    return await new Promise<RawResult<T>>((resolve) => {
      client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        request,
        new Metadata(),
        { deadline: new Date(Date.now() + 10_000) },
        (err: ServiceError | null, value?: T) => {
          if (err) resolve({ ok: false, code: grpcStatusName(err.code), message: err.details });
          else resolve({ ok: true, value: value as T });
        },
      );
    });
  } finally {
    client.close();
  }
}
