/**
 * The Docker build context, without Docker (devtools/docker-context.ts): .dockerignore semantics
 * as the Docker CLI applies them, the repository's .dockerignore keeping every generated key out,
 * and the Dockerfile copying everything the production entry points import (and nothing that is
 * only a devDependency). `npm run check:image` additionally installs and loads the image's files.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  copiedSources,
  filesCopied,
  findSecrets,
  isIgnored,
  listBuildContext,
  parseDockerignore,
} from '../../devtools/docker-context.js';
import { tempDirectory } from '../helpers/temp-dir.js';

const root = join(import.meta.dirname, '..', '..');
const ENTRY_POINTS = [
  'broker/main.ts',
  'edge/main.ts',
  'bridge/main.ts',
  'certs/cli.ts',
  'edge/sensor-user.ts',
  'scripts/simulate-sensors.ts',
];
// assembled here so that this file does not itself look like a key
const PEM_KEY_HEADER = ['-----BEGIN', 'PRIVATE KEY-----'].join(' ');

describe('.dockerignore matching', () => {
  const ignored = (patterns: string, path: string) => isIgnored(parseDockerignore(patterns), path);

  it('matches a pattern without a slash at the root only, unlike .gitignore', () => {
    expect(ignored('*.key', 'ca.key')).toBe(true);
    expect(ignored('*.key', 'certs/compose/ca.key')).toBe(false);
    expect(ignored('**/*.key', 'certs/compose/ca.key')).toBe(true);
    expect(ignored('**/*.key', 'ca.key')).toBe(true);
  });

  it('excludes everything below a directory it matches, with or without a leading or trailing slash', () => {
    for (const pattern of ['certs/compose', '/certs/compose', 'certs/compose/', './certs/compose']) {
      expect(ignored(pattern, 'certs/compose/devices/a.key'), pattern).toBe(true);
      expect(ignored(pattern, 'certs/cli.ts'), pattern).toBe(false);
    }
    expect(ignored('node_modules', 'node_modules/pg/lib/client.js')).toBe(true);
    expect(ignored('node_modules', 'src/node_modules/x.js')).toBe(false);
  });

  it("lets '*' and '?' stop at '/', '**' cross directories, and the last matching pattern decide", () => {
    expect(ignored('certs/*.pem', 'certs/a.pem')).toBe(true);
    expect(ignored('certs/*.pem', 'certs/dev/a.pem')).toBe(false);
    expect(ignored('certs/**/*.pem', 'certs/dev/x/a.pem')).toBe(true);
    expect(ignored('data?', 'data1')).toBe(true);
    expect(ignored('data?', 'data/x')).toBe(false);
    expect(ignored('*.md\n!README.md', 'README.md')).toBe(false);
    expect(ignored('*.md\n!README.md', 'CHANGES.md')).toBe(true);
    expect(ignored('!README.md\n*.md', 'README.md')).toBe(true);
    expect(ignored('# a comment\n\n  *.log  ', 'x.log')).toBe(true);
    expect(ignored('file[0-9].txt', 'file7.txt')).toBe(true);
    expect(ignored('a.b', 'axb')).toBe(false);
  });
});

describe("the repository's .dockerignore", () => {
  const dir = tempDirectory('docker-context');
  const files: Record<string, string> = {
    '.dockerignore': readFileSync(join(root, '.dockerignore'), 'utf8'),
    'broker/main.ts': 'export {};',
    'certs/cli.ts': 'export {};',
    'certs/compose/ca.key': PEM_KEY_HEADER,
    'certs/compose/ca.crt': 'certificate',
    'certs/compose/devices/d.key': PEM_KEY_HEADER,
    'certs/dev/broker.key': PEM_KEY_HEADER,
    'certs/dev/broker.crt': 'certificate',
    'config/tls/server.pem': PEM_KEY_HEADER,
    'deep/down/client.key': PEM_KEY_HEADER,
    'bundle.p12': 'binary',
    '.data/edge.db': 'sqlite',
    'edge.db-wal': 'sqlite',
    'node_modules/pg/index.js': 'module.exports = {}',
    '.git/HEAD': 'ref: refs/heads/main',
    'coverage/index.html': '<html>',
    'notes/disguised.txt': `keep this\n${PEM_KEY_HEADER}\n`,
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }

  it('keeps generated certificates, key files, local data, dependencies and git out of the context', () => {
    expect(listBuildContext(dir)).toEqual(['.dockerignore', 'broker/main.ts', 'certs/cli.ts', 'notes/disguised.txt']);
  });

  it('finds a private key under any name, and key material that .dockerignore would let through', () => {
    expect(findSecrets(dir, listBuildContext(dir))).toEqual([
      { path: 'notes/disguised.txt', reason: 'contains a PEM private key' },
    ]);
    expect(findSecrets(dir, ['certs/compose/ca.crt', 'deep/down/client.key', 'broker/main.ts'])).toEqual([
      { path: 'certs/compose/ca.crt', reason: 'generated certificate material' },
      { path: 'deep/down/client.key', reason: 'key file' },
    ]);
  });
});

describe("the repository's build context and Dockerfile", () => {
  const context = listBuildContext(root);
  const copied = new Set(filesCopied(context, copiedSources(readFileSync(join(root, 'Dockerfile'), 'utf8'))));

  it('holds no private key and none of node_modules, .git or local data', () => {
    expect(findSecrets(root, context)).toEqual([]);
    expect(context.filter((path) => /^(node_modules|\.git|\.data|coverage)(\/|$)/.test(path))).toEqual([]);
  });

  it('copies every file the production entry points import, and no test', () => {
    const { files, packages } = importGraph(ENTRY_POINTS);
    expect([...files].filter((file) => !copied.has(file))).toEqual([]);
    expect([...copied].filter((file) => file.startsWith('tests/'))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const notInstalled = [...packages].filter((name) => manifest.dependencies[name] === undefined);
    expect(notInstalled, 'imported by a production entry point but not a dependency (npm ci --omit=dev)').toEqual([]);
    expect(manifest.dependencies['tsx'], 'the image runs TypeScript through tsx').toBeDefined();
  });

  it('reads COPY sources the way Docker does, skipping copies from another stage', () => {
    expect(
      copiedSources('FROM x\nCOPY a.json b.json ./\nCOPY --chown=node:node src ./src\nCOPY --from=build /out ./out\n'),
    ).toEqual(['a.json', 'b.json', 'src']);
    expect(() => filesCopied(['a.ts'], ['missing'])).toThrow(
      "the Dockerfile copies 'missing', which is not in the build context",
    );
  });
});

const IMPORT_PATTERN =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^import\s*['"]([^'"]+)['"]/gm;

/** Files and packages reachable from the entry points through static and dynamic imports. */
function importGraph(entries: string[]): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const pending = [...entries];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    if (!file.endsWith('.ts')) continue;
    for (const match of readFileSync(join(root, file), 'utf8').matchAll(IMPORT_PATTERN)) {
      const specifier = match[1] ?? match[2] ?? match[3] ?? '';
      if (specifier.startsWith('.')) {
        pending.push(normalize(join(dirname(file), specifier)).replace(/\.js$/, '.ts'));
      } else if (!specifier.startsWith('node:') && !builtinModules.includes(specifier)) {
        const parts = specifier.split('/');
        packages.add(specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? specifier));
      }
    }
  }
  return { files, packages };
}
