/** The broker's version (kept equal to package.json's by a test). */
export const BROKER_VERSION = '0.1.0';
