import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// Issue 15 item 6: the package is not on the public registry, so the README must never tell
// anyone to run `npx spiffe-broker` (outside the checkout npm would fetch a stranger's package).
describe('README.md', () => {
  const readme = readFileSync('README.md', 'utf8');
  it('never shows a command line running npx spiffe-broker', () => {
    const lines = readme.split('\n').filter((l) => /^\s*(\$\s*)?npx\s+spiffe-broker\b/.test(l));
    expect(lines).toEqual([]);
  });
  it('shows the two set-up commands and says how to install from the tarball', () => {
    expect(readme).toContain('npm ci && npm run lab');
    expect(readme).toContain('npm test');
    expect(readme).toMatch(/npm install -g --omit=dev \.\/spiffe-broker-[\d.]+\.tgz/);
  });
});
