/**
 * What `docker build .` sends to the daemon (the build context), computed without Docker: every
 * file under the directory, minus what .dockerignore excludes. Used by scripts/check-image.ts and
 * tests/unit/docker-context.test.ts to make sure no private key ever reaches an image.
 *
 * Why the file system and not `git ls-files`: Docker does not read .gitignore. The certificates
 * docker-compose generates (certs/compose/, git-ignored) are on disk next to the sources, and
 * unless .dockerignore excludes them they are sent with every build and copied by `COPY certs`.
 *
 * The matching follows moby/patternmatcher (what the Docker CLI and BuildKit use for
 * .dockerignore): patterns are relative to the context root (a leading '/' is dropped), '*' and
 * '?' never match '/', '**' matches any number of directories, a pattern without '/' matches at
 * the root only (unlike .gitignore: `*.key` is `./*.key`, `**\/*.key` is everywhere), a pattern
 * that matches a directory excludes everything below it, '!' re-includes, and the last matching
 * pattern decides.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

export interface IgnorePattern {
  /** as written, for messages */
  source: string;
  exclusion: boolean;
  regex: RegExp;
  /** how many path segments the pattern has */
  depth: number;
}

/** The patterns of a .dockerignore file (pure). */
export function parseDockerignore(text: string): IgnorePattern[] {
  const patterns: IgnorePattern[] = [];
  for (const line of text.split(/\r?\n/)) {
    let pattern = line.trim();
    if (pattern === '' || pattern.startsWith('#')) continue;
    const exclusion = pattern.startsWith('!');
    if (exclusion) pattern = pattern.slice(1).trim();
    pattern = cleanPath(pattern);
    if (pattern === '') continue;
    patterns.push({ source: line.trim(), exclusion, regex: compile(pattern), depth: pattern.split('/').length });
  }
  return patterns;
}

/** Whether `path` (relative, '/'-separated) is left out of the context (pure). */
export function isIgnored(patterns: readonly IgnorePattern[], path: string): boolean {
  const parentSegments = path.split('/').slice(0, -1);
  let ignored = false;
  for (const pattern of patterns) {
    let match = pattern.regex.test(path);
    if (!match && parentSegments.length > 0 && pattern.depth <= parentSegments.length) {
      match = pattern.regex.test(parentSegments.slice(0, pattern.depth).join('/'));
    }
    if (match) ignored = !pattern.exclusion;
  }
  return ignored;
}

/** Every file of the build context of `root`, sorted ('/'-separated, relative to root). */
export function listBuildContext(root: string): string[] {
  const ignoreFile = join(root, '.dockerignore');
  const patterns = existsSync(ignoreFile) ? parseDockerignore(readFileSync(ignoreFile, 'utf8')) : [];
  // a directory may be skipped whole only when no '!' pattern could bring something back
  const canPrune = !patterns.some((pattern) => pattern.exclusion);
  const files: string[] = [];
  const walk = (relative: string) => {
    for (const entry of readdirSync(join(root, relative), { withFileTypes: true })) {
      const path = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) {
        if (canPrune && isIgnored(patterns, path)) continue;
        walk(path);
      } else if (!isIgnored(patterns, path)) {
        files.push(path);
      }
    }
  };
  walk('');
  return files.sort();
}

export interface SecretFinding {
  path: string;
  reason: string;
}

const PRIVATE_KEY_PEM = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/;
const KEY_FILE = /\.(key|p12|pfx)$/i;
const GENERATED_CERTIFICATE_DIRS = ['certs/dev/', 'certs/compose/'];
/** larger files are not read (none of the sources comes close) */
const MAX_SCANNED_BYTES = 4 * 1024 * 1024;

/**
 * Files of a context that must never be in an image: key files by name, anything under the
 * generated certificate folders, and any file holding a PEM private key whatever its name.
 */
export function findSecrets(root: string, files: readonly string[]): SecretFinding[] {
  const findings: SecretFinding[] = [];
  for (const path of files) {
    if (GENERATED_CERTIFICATE_DIRS.some((dir) => path.startsWith(dir))) {
      findings.push({ path, reason: 'generated certificate material' });
    } else if (KEY_FILE.test(path)) {
      findings.push({ path, reason: 'key file' });
    } else {
      const content = readFileSync(join(root, path));
      if (content.length <= MAX_SCANNED_BYTES && PRIVATE_KEY_PEM.test(content.toString('latin1'))) {
        findings.push({ path, reason: 'contains a PEM private key' });
      }
    }
  }
  return findings;
}

function cleanPath(pattern: string): string {
  const segments: string[] = [];
  for (const segment of pattern.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  return segments.join('/');
}

/** moby/patternmatcher's translation of a pattern into a regular expression. */
function compile(pattern: string): RegExp {
  let regex = '^';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') i++; // '**/' is '**'
        regex += i + 1 >= pattern.length ? '.*' : '(.*/)?';
      } else {
        regex += '[^/]*';
      }
    } else if (ch === '?') {
      regex += '[^/]';
    } else if (ch === '\\' && i + 1 < pattern.length) {
      i++;
      regex += escapeRegex(pattern[i]!);
    } else if (ch === '[') {
      // a character class, as in Go's filepath.Match ('^' negates); unterminated: a literal '['
      const end = pattern.indexOf(']', i + 1);
      if (end === -1) {
        regex += '\\[';
      } else {
        regex += `[${pattern.slice(i + 1, end).replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else {
      regex += escapeRegex(ch);
    }
  }
  return new RegExp(`${regex}$`);
}

function escapeRegex(ch: string): string {
  return /[.+^${}()|[\]\\/]/.test(ch) ? `\\${ch}` : ch;
}

/**
 * The sources of the Dockerfile's COPY instructions from the build context (not `--from` a
 * stage), as written: files or directories relative to the context root (pure).
 */
export function copiedSources(dockerfile: string): string[] {
  const sources: string[] = [];
  for (const line of dockerfile.replace(/\\\r?\n/g, ' ').split(/\r?\n/)) {
    const words = line.trim().split(/\s+/);
    if (words[0]?.toUpperCase() !== 'COPY') continue;
    const args = words.slice(1);
    if (args.some((arg) => arg.startsWith('--from'))) continue;
    const paths = args.filter((arg) => !arg.startsWith('--'));
    sources.push(...paths.slice(0, -1).map(cleanPath));
  }
  return sources;
}

/** The context files a set of COPY sources brings into the image; a source not in the context is an error. */
export function filesCopied(context: readonly string[], sources: readonly string[]): string[] {
  const files = new Set<string>();
  for (const source of sources) {
    const matching = context.filter((path) => path === source || path.startsWith(`${source}/`));
    if (matching.length === 0) throw new Error(`the Dockerfile copies '${source}', which is not in the build context`);
    for (const path of matching) files.add(path);
  }
  return [...files].sort();
}
