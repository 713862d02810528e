import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { BROKER_VERSION } from '../../src/daemon/version.js';

it('BROKER_VERSION matches package.json', () => {
  expect(BROKER_VERSION).toBe(
    (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version,
  );
});
