import type { Logger } from '../../platform/logger.js';

/**
 * Side-effect seams of the Kubernetes adapters: the one logger seam and the one wake-up trigger
 * of the project (src/platform), under the names these adapters have always used.
 * @module
 */

/** The structured logger (src/platform/logger.ts); silent by default. */
export type K8sLogger = Logger;
export { nullLogger } from '../../platform/logger.js';
export { Trigger } from '../../platform/trigger.js';
