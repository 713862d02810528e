// Records the platform packages of @biomejs/biome that this environment's npm registry does not
// serve (it serves linux only) in package-lock.json, so `npm ci` accepts the lock everywhere.
// npm never downloads a platform package for another platform, so these entries are only
// bookkeeping; on a machine of that platform npm fetches them from the public registry.
// Run after any `npm install` that rewrites the lock: node scripts/lockfile-platforms.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(path, 'utf8'));
const ref = lock.packages['node_modules/@biomejs/cli-linux-x64'];
if (!ref) throw new Error('package-lock.json has no @biomejs/cli-linux-x64 entry to copy from');
const platforms = {
  'android-arm64': ['android', 'arm64'],
  'android-x64': ['android', 'x64'],
  'darwin-arm64': ['darwin', 'arm64'],
  'darwin-x64': ['darwin', 'x64'],
  'linux-arm64': ['linux', 'arm64'],
  'linux-arm64-musl': ['linux', 'arm64', 'musl'],
  'linux-x64-musl': ['linux', 'x64', 'musl'],
  'win32-arm64': ['win32', 'arm64'],
  'win32-x64': ['win32', 'x64'],
};
let added = 0;
for (const [name, [os, cpu, libc]] of Object.entries(platforms)) {
  const key = `node_modules/@biomejs/cli-${name}`;
  if (lock.packages[key]) continue;
  lock.packages[key] = {
    version: ref.version,
    cpu: [cpu],
    dev: true,
    license: ref.license,
    optional: true,
    os: [os],
    ...(libc ? { libc: [libc] } : {}),
    engines: ref.engines,
  };
  added++;
}
const sorted = {};
for (const k of Object.keys(lock.packages).sort()) sorted[k] = lock.packages[k];
lock.packages = sorted;
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`package-lock.json: ${added} platform entries added`);
