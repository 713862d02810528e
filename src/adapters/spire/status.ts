import type { SpireErrorCode } from '../../errors.js';

/**
 * gRPC status code names by number (google.rpc.Code). SPIRE's per-item `Status.code` uses the
 * same numbers.
 */
export const GRPC_STATUS_NAMES = Object.freeze([
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const);

/** A gRPC status code name, e.g. `'NOT_FOUND'`. */
export type GrpcStatusName = (typeof GRPC_STATUS_NAMES)[number];

/** gRPC status numbers by name. */
export const GRPC_STATUS = Object.freeze(
  Object.fromEntries(GRPC_STATUS_NAMES.map((n, i) => [n, i])) as { [K in GrpcStatusName]: number },
);

/** The name of a gRPC status number, or `'UNKNOWN'` for numbers outside the table. */
export function grpcStatusName(code: number): GrpcStatusName {
  return GRPC_STATUS_NAMES[code] ?? 'UNKNOWN';
}

/** The broker error code for a failed gRPC status (top-level or per batch item). */
export function spireErrorCodeFor(code: number): SpireErrorCode {
  switch (grpcStatusName(code)) {
    case 'UNAVAILABLE':
      return 'ERR_SPIRE_UNAVAILABLE';
    case 'DEADLINE_EXCEEDED':
      return 'ERR_SPIRE_DEADLINE';
    case 'PERMISSION_DENIED':
      return 'ERR_SPIRE_PERMISSION_DENIED';
    case 'UNAUTHENTICATED':
      return 'ERR_SPIRE_UNAUTHENTICATED';
    case 'NOT_FOUND':
      return 'ERR_SPIRE_NOT_FOUND';
    case 'ALREADY_EXISTS':
      return 'ERR_SPIRE_ALREADY_EXISTS';
    case 'INVALID_ARGUMENT':
      return 'ERR_SPIRE_INVALID_ARGUMENT';
    case 'FAILED_PRECONDITION':
      return 'ERR_SPIRE_FAILED_PRECONDITION';
    case 'INTERNAL':
      return 'ERR_SPIRE_INTERNAL';
    case 'UNIMPLEMENTED':
      return 'ERR_SPIRE_UNIMPLEMENTED';
    case 'CANCELLED':
      return 'ERR_SPIRE_ABORTED';
    default:
      return 'ERR_SPIRE_RPC';
  }
}

/** gRPC statuses worth retrying: the call may not have reached the server, or timed out. */
export function isRetryableStatus(code: number): boolean {
  return code === GRPC_STATUS.UNAVAILABLE || code === GRPC_STATUS.DEADLINE_EXCEEDED;
}
