/**
 * The dependency rules of the tree, checked over the real import graph of every tracked
 * TypeScript file (static `import … from`, `export … from` and dynamic `import()`):
 *
 * - the processes (broker/, edge/, bridge/) never import each other: each ships and runs alone;
 * - schemas/ and common/ import no process, no dev tooling and no test code;
 * - the operator CLI (ctl/) is a program of its own that talks HTTP to the bridge's REST API: it
 *   imports schemas/ and common/ only, never a process (nor a process it);
 * - production code (the processes, schemas/, common/, certs/, ctl/) never imports dev tooling
 *   (devtools/, scripts/, tests/) nor a package that is only a devDependency, so a production
 *   image installs `npm ci --omit=dev` and still runs;
 * - inside a process, storage layers do not reach up into the layers that use them
 *   (edge/store → edge/uplink or edge/ingest; bridge/db → bridge/ingest, bridge/mqtt, bridge/http).
 *
 * A failure names each offending import, so the fix is obvious from CI's output.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';

interface ImportEdge {
  from: string;
  /** a repository path for a relative import, the package name otherwise */
  to: string;
  relative: boolean;
}

const root = join(import.meta.dirname, '..', '..');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

function trackedTypeScript(): string[] {
  return execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts'], {
    cwd: root,
    encoding: 'utf8',
  })
    .split('\n')
    .filter((path) => path !== '');
}

const IMPORT_PATTERN =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^import\s*['"]([^'"]+)['"]/gm;

function importsOf(file: string): ImportEdge[] {
  const source = readFileSync(join(root, file), 'utf8');
  const edges: ImportEdge[] = [];
  for (const match of source.matchAll(IMPORT_PATTERN)) {
    const specifier = match[1] ?? match[2] ?? match[3];
    if (specifier === undefined) continue;
    if (specifier.startsWith('.')) {
      edges.push({ from: file, to: normalize(join(dirname(file), specifier)).replace(/\.js$/, '.ts'), relative: true });
    } else {
      edges.push({ from: file, to: packageName(specifier), relative: false });
    }
  }
  return edges;
}

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? specifier);
}

const topFolder = (path: string): string => path.split('/')[0] ?? path;
const isUnder = (path: string, folders: readonly string[]): boolean =>
  folders.some((folder) => path.startsWith(`${folder}/`));

const PROCESSES = ['broker', 'edge', 'bridge'] as const;
const PRODUCTION = [...PROCESSES, 'schemas', 'common', 'certs', 'ctl'];
const DEV_TOOLING = ['devtools', 'scripts', 'tests'];
const LAYERS: { layer: string; mustNotImport: string[] }[] = [
  { layer: 'edge/store', mustNotImport: ['edge/uplink', 'edge/ingest'] },
  { layer: 'bridge/db', mustNotImport: ['bridge/ingest', 'bridge/mqtt', 'bridge/http'] },
];

const edges = trackedTypeScript().flatMap(importsOf);
const describeEdge = (edge: ImportEdge) => `${edge.from} imports ${edge.to}`;

describe('dependency direction', () => {
  it('finds the import graph (the scan itself works)', () => {
    expect(edges.length).toBeGreaterThan(100);
    expect(edges).toContainEqual({ from: 'broker/main.ts', to: 'broker/server.ts', relative: true });
    expect(edges).toContainEqual({ from: 'broker/server.ts', to: 'aedes', relative: false });
  });

  it('no process imports another process', () => {
    const crossing = edges.filter(
      (edge) =>
        edge.relative &&
        isUnder(edge.from, PROCESSES) &&
        isUnder(edge.to, PROCESSES) &&
        topFolder(edge.from) !== topFolder(edge.to),
    );
    expect(crossing.map(describeEdge)).toEqual([]);
  });

  it('ctl/ imports only schemas/ and common/ (it talks HTTP to the API), and no process imports ctl/ (the demo and the benchmarks may: they act as operators)', () => {
    const outside = edges.filter(
      (edge) => edge.relative && isUnder(edge.from, ['ctl']) && !isUnder(edge.to, ['ctl', 'schemas', 'common']),
    );
    const into = edges.filter(
      (edge) => edge.relative && !isUnder(edge.from, ['ctl', 'tests', 'scripts']) && isUnder(edge.to, ['ctl']),
    );
    expect([...outside, ...into].map(describeEdge)).toEqual([]);
  });

  it('schemas/ and common/ import no process, no dev tooling and no certificate tooling', () => {
    const upward = edges.filter(
      (edge) => edge.relative && isUnder(edge.from, ['schemas', 'common']) && !isUnder(edge.to, ['schemas', 'common']),
    );
    expect(upward.map(describeEdge)).toEqual([]);
  });

  it('production code never imports dev tooling', () => {
    const leaks = edges.filter(
      (edge) => edge.relative && isUnder(edge.from, PRODUCTION) && isUnder(edge.to, DEV_TOOLING),
    );
    expect(leaks.map(describeEdge)).toEqual([]);
  });

  it('production code imports only runtime dependencies and node built-ins', () => {
    const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));
    const runtime = new Set(Object.keys(manifest.dependencies));
    const outside = edges.filter(
      (edge) =>
        !edge.relative &&
        isUnder(edge.from, PRODUCTION) &&
        !builtins.has(edge.to) &&
        !edge.to.startsWith('node:') &&
        !runtime.has(edge.to),
    );
    expect(outside.map(describeEdge)).toEqual([]);
  });

  it('storage layers do not import the layers above them', () => {
    const inverted = edges.filter((edge) =>
      LAYERS.some(
        ({ layer, mustNotImport }) => edge.relative && isUnder(edge.from, [layer]) && isUnder(edge.to, mustNotImport),
      ),
    );
    expect(inverted.map(describeEdge)).toEqual([]);
  });

  it('every relative import resolves to a file of the tree', () => {
    const files = new Set(trackedTypeScript());
    const dangling = edges.filter((edge) => edge.relative && edge.to.endsWith('.ts') && !files.has(edge.to));
    expect(dangling.map(describeEdge)).toEqual([]);
  });
});
