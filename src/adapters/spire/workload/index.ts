/**
 * A client of the SPIFFE Workload API (X.509 part: FetchX509SVID) over a unix socket, e.g. a
 * SPIRE agent's, with its own proto definition (proto/workload/workload.proto). The broker takes
 * its bundle endpoint's X509-SVID from it when configured to.
 * @module
 */
export type {
  WorkloadApiClientOptions,
  WorkloadX509Svid,
  WorkloadX509Update,
  X509SvidWatcher,
} from './client.js';
export { WORKLOAD_API_HEADER, WorkloadApiClient, workloadSvidFromWire } from './client.js';
