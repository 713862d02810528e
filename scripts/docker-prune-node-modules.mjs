#!/usr/bin/env node
// Removes from a production node_modules tree what Node never loads, for the runtime image
// (Dockerfile, builder stage). Conservative on purpose: nothing that a `require`/`import` of a
// package's JavaScript can reach is removed.
//
//   node scripts/docker-prune-node-modules.mjs <node_modules dir>
//
// Removed:
// - anywhere: TypeScript sources and declarations (*.ts, *.d.mts, *.d.cts), source maps (*.map),
//   *.tsbuildinfo, Markdown other than licences, and tool dotfiles (.eslintrc*, .nycrc, ...);
// - at a package's root only: test/tests/__tests__, example/examples, benchmark(s), .github;
// - prebuilt native addons for other platforms (prebuilds/<platform>-<arch>* not this one's).
// Kept: every licence and notice file, package.json files, all .js/.cjs/.mjs/.json/.node/.proto.
// Prints the bytes and files removed.
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: docker-prune-node-modules.mjs <node_modules dir>');
  process.exit(2);
}

const platform = `${process.platform}-${process.arch}`;
const ROOT_DIRS = new Set([
  'test',
  'tests',
  '__tests__',
  'example',
  'examples',
  'benchmark',
  'benchmarks',
  '.github',
]);
const DOTFILES =
  /^\.(eslintrc.*|eslintignore|prettierrc.*|prettierignore|nycrc.*|npmignore|editorconfig|gitattributes|travis\.yml|jshintrc|babelrc|airtap\.yml|taprc|c8rc.*)$/;
const LICENCE = /^(licen[cs]e|notice|copying|authors)/i;

let files = 0;
let bytes = 0;

function size(path) {
  const st = lstatSync(path);
  if (!st.isDirectory()) return { n: 1, b: st.size };
  let n = 0;
  let b = 0;
  for (const e of readdirSync(path)) {
    const s = size(join(path, e));
    n += s.n;
    b += s.b;
  }
  return { n, b };
}

function remove(path) {
  const s = size(path);
  files += s.n;
  bytes += s.b;
  rmSync(path, { recursive: true, force: true });
}

function droppable(name) {
  if (LICENCE.test(name)) return false;
  return (
    name.endsWith('.ts') ||
    name.endsWith('.mts') ||
    name.endsWith('.cts') ||
    name.endsWith('.map') ||
    name.endsWith('.tsbuildinfo') ||
    /\.(md|markdown)$/i.test(name) ||
    DOTFILES.test(name)
  );
}

/** Walks one package (or any directory inside it); `isRoot` marks the package's own root. */
function walk(path, isRoot) {
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    if (entry.isDirectory()) {
      if (entry.name === 'node_modules') walkModules(full);
      else if (isRoot && ROOT_DIRS.has(entry.name)) remove(full);
      else if (entry.name === 'prebuilds') prunePrebuilds(full);
      else walk(full, false);
    } else if (entry.isFile() && droppable(entry.name)) {
      remove(full);
    }
  }
}

function prunePrebuilds(path) {
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    if (entry.isDirectory() && !entry.name.startsWith(platform)) remove(full);
    else if (entry.isDirectory()) walk(full, false);
  }
}

/** A node_modules directory: packages and @scope/packages. */
function walkModules(path) {
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    if (entry.name === '.bin' || entry.name === '.package-lock.json') remove(full);
    else if (!entry.isDirectory()) continue;
    else if (entry.name.startsWith('@')) {
      for (const pkg of readdirSync(full, { withFileTypes: true })) {
        if (pkg.isDirectory()) walk(join(full, pkg.name), true);
      }
    } else walk(full, true);
  }
}

walkModules(dir);
console.log(
  `pruned ${files} files, ${(bytes / 1e6).toFixed(1)} MB from ${dir} (kept prebuilds for ${platform})`,
);
