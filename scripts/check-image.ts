/**
 * `npm run check:image`: what building the Docker image would send and install, checked without
 * Docker (no daemon or base image needed):
 *
 *   1. the build context (every file minus .dockerignore, devtools/docker-context.ts) holds no
 *      private key: no *.key/*.p12/*.pfx, nothing under certs/dev or certs/compose, no file with a
 *      PEM private key whatever its name;
 *   2. the files the Dockerfile COPYs, with package.json and package-lock.json, go into a fresh
 *      temporary folder (outside the repository, so no node_modules above it), where
 *      `npm ci --omit=dev` installs the production dependencies, as the Dockerfile does;
 *   3. every production entry point loads its whole module graph from that install: each is run
 *      with a setting that makes it stop right after loading, and must print its own
 *      configuration error (an ERR_MODULE_NOT_FOUND for a devDependency would come first).
 *
 *   npm run check:image                    all three (step 2 needs the npm registry or its cache)
 *   npm run check:image -- --context-only  step 1 only, fast
 *   npm run check:image -- --list          also print the build context
 *   npm run check:image -- --keep          keep the temporary folder
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { copiedSources, filesCopied, findSecrets, listBuildContext } from '../devtools/docker-context.js';

const root = join(import.meta.dirname, '..');
const args = new Set(process.argv.slice(2));

interface EntryCheck {
  entry: string;
  args?: string[];
  env: Record<string, string>;
  exitCode: number;
  /** printed on stdout or stderr once the module graph has loaded */
  expect: string;
}

const ENTRY_POINTS: EntryCheck[] = [
  {
    entry: 'broker/main.ts',
    env: { BROKER_PORT: 'not-a-port' },
    exitCode: 1,
    expect: "broker failed to start: BROKER_PORT must be an integer, got 'not-a-port'",
  },
  {
    entry: 'edge/main.ts',
    env: { DEVICE_ID: 'not-a-uuid' },
    exitCode: 1,
    expect: "edge agent failed to start: DEVICE_ID must be a lower-case UUID (the certificate CN), got 'not-a-uuid'",
  },
  { entry: 'bridge/main.ts', env: {}, exitCode: 1, expect: 'bridge failed to start: DATABASE_URL is required' },
  { entry: 'certs/cli.ts', args: ['help'], env: {}, exitCode: 0, expect: 'usage: npx tsx certs/cli.ts' },
  { entry: 'ctl/main.ts', args: ['help'], env: {}, exitCode: 0, expect: 'usage: npm run ctl' },
  { entry: 'edge/sensor-user.ts', args: ['--help'], env: {}, exitCode: 0, expect: 'usage: npm run -s sensor-user' },
  { entry: 'scripts/simulate-sensors.ts', env: { SENSOR_COUNT: '0' }, exitCode: 1, expect: 'SENSOR_COUNT must be ≥ 1' },
];

function fail(message: string): never {
  console.error(`check:image: ${message}`);
  process.exit(1);
}

// 1. the build context
const context = listBuildContext(root);
if (args.has('--list')) for (const path of context) console.log(path);
const secrets = findSecrets(root, context);
if (secrets.length > 0) {
  fail(
    `private key material in the Docker build context (extend .dockerignore):\n` +
      secrets.map((finding) => `  ${finding.path}: ${finding.reason}`).join('\n'),
  );
}
const copied = filesCopied(context, copiedSources(readFileSync(join(root, 'Dockerfile'), 'utf8')));
console.log(`build context: ${context.length} files, no private key; the Dockerfile copies ${copied.length} of them`);
if (args.has('--context-only')) process.exit(0);

// 2. the production install
const workDir = mkdtempSync(join(tmpdir(), 'check-image-'));
try {
  for (const path of copied) {
    mkdirSync(dirname(join(workDir, path)), { recursive: true });
    cpSync(join(root, path), join(workDir, path));
  }
  console.log(`npm ci --omit=dev in ${workDir}`);
  const install = spawnSync('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], {
    cwd: workDir,
    stdio: 'inherit',
    env: { ...process.env, NODE_ENV: 'production' },
  });
  if (install.status !== 0) fail(`npm ci --omit=dev failed (exit ${install.status})`);

  // 3. every entry point loads from it
  const problems: string[] = [];
  for (const check of ENTRY_POINTS) {
    const run = spawnSync(process.execPath, ['--import', 'tsx', check.entry, ...(check.args ?? [])], {
      cwd: workDir,
      encoding: 'utf8',
      env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', LOG_LEVEL: 'fatal', ...check.env },
      timeout: 60_000,
    });
    const output = `${run.stdout}${run.stderr}`;
    if (run.status === check.exitCode && output.includes(check.expect)) {
      console.log(`  ${check.entry}: loads (exit ${run.status}: "${check.expect}")`);
    } else {
      problems.push(`${check.entry}: exit ${run.status}, expected ${check.exitCode} and "${check.expect}":\n${output}`);
    }
  }
  if (problems.length > 0) fail(`entry points that do not load from the production install:\n${problems.join('\n')}`);
  console.log('check:image: ok');
} finally {
  if (args.has('--keep')) console.log(`kept ${workDir}`);
  else rmSync(workDir, { recursive: true, force: true });
}
