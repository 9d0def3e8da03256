/**
 * The one TLS-files type of the project: the PEM buffers that tls.createServer, tls.connect and
 * mqtt.connect take, read from three paths. Every process (broker, edge, bridge) and every dev tool
 * uses it, so a certificate set loaded once fits each of them.
 *
 * Reading is synchronous on purpose: it happens once, in an environment loader, before the process
 * serves anything, and an unreadable file must stop start-up with a message naming the variable.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, envOptional, type Env } from './env.js';

/** PEM buffers: the CA that the peer must chain to, our certificate, and its private key. */
export interface TlsFiles {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface TlsFilePaths {
  caPath: string;
  certPath: string;
  keyPath: string;
}

/** Names of the three environment variables (or other labels) that error messages cite. */
export interface TlsFileNames {
  ca: string;
  cert: string;
  key: string;
}

const PLAIN_NAMES: TlsFileNames = { ca: 'CA certificate', cert: 'certificate', key: 'private key' };

/** Reads the three files; a ConfigError names the file that cannot be read and why. */
export function readTlsFiles(paths: TlsFilePaths, names: TlsFileNames = PLAIN_NAMES): TlsFiles {
  return {
    ca: readNamed(names.ca, paths.caPath),
    cert: readNamed(names.cert, paths.certPath),
    key: readNamed(names.key, paths.keyPath),
  };
}

/**
 * TLS files from three environment variables that must be given together. `required`: a TLS URL
 * needs them; when not required and none is given, the result is undefined (plain MQTT, tests).
 */
export function tlsFilesFromEnv(
  env: Env,
  names: TlsFileNames,
  options: { required: boolean; requiredBecause?: string },
): TlsFiles | undefined {
  const paths = {
    caPath: envOptional(env, names.ca),
    certPath: envOptional(env, names.cert),
    keyPath: envOptional(env, names.key),
  };
  const given = Object.values(paths).filter((path) => path !== undefined).length;
  const all = `${names.ca}, ${names.cert} and ${names.key}`;
  if (given === 0 && !options.required) return undefined;
  if (given !== 3) {
    throw new ConfigError(
      options.required
        ? `${all} are all required ${options.requiredBecause ?? ''}`.trimEnd()
        : `${all} must be given together`,
    );
  }
  return readTlsFiles(paths as TlsFilePaths, names);
}

function readNamed(name: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConfigError(`${name}: cannot read '${path}': ${reason}`);
  }
}
