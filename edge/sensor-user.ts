/**
 * `npm run -s sensor-user -- NAME [options]`: prints one line for SENSOR_USERS_FILE
 * (edge/ingest/sensor-users.ts), with the password hashed by scrypt (edge/ingest/sensor-passwords.ts).
 *
 * The password never goes on the command line (other users of the machine could read it in the
 * process list): it comes from the first line of --password-file, or from standard input. With
 * --create, a missing --password-file is first created with a random password (32 random bytes,
 * base64url) and mode 0600; an existing one is reused, so the command can run at every start of a
 * deployment (docker-compose.yml does).
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_SCRYPT_PARAMS, checkScryptParams, hashPassword } from './ingest/sensor-passwords.js';
import {
  SENSOR_ROLES,
  SENSOR_USER_NAME_PATTERN,
  formatSensorUserLine,
  isSensorRole,
  parseSensorScope,
} from './ingest/sensor-users.js';

export interface SensorUserCliIo {
  log(line: string): void;
  error(line: string): void;
  /** all of standard input */
  readStdin(): Promise<string>;
}

const USAGE = `usage: npm run -s sensor-user -- NAME [options] >> users-file

Prints a SENSOR_USERS_FILE line NAME:HASH:ROLE:SENSORS for the edge agent's sensor listener.
The password is the first line of --password-file, or of standard input.

options:
  --role ROLE            ${SENSOR_ROLES.join(' | ')} (default publisher)
  --sensors IDS          + (any sensor, default) or a comma-separated list of sensor ids
  --password-file FILE   read the password from FILE
  --create               with --password-file: create FILE with a random password (mode 0600) if it does not exist
  --cost LN              scrypt cost, log2 of N (default ${DEFAULT_SCRYPT_PARAMS.ln})`;

const OPTIONS = {
  role: { type: 'string' },
  sensors: { type: 'string' },
  'password-file': { type: 'string' },
  create: { type: 'boolean' },
  cost: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

class UsageError extends Error {}

/** Resolves to the exit code: 0 ok, 1 failure, 2 usage error. */
export async function runSensorUserCli(argv: string[], io: SensorUserCliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    io.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.log(USAGE);
    return 0;
  }
  try {
    if (positionals.length !== 1) throw new UsageError('give exactly one user NAME');
    const [name = ''] = positionals;
    if (!SENSOR_USER_NAME_PATTERN.test(name)) {
      throw new UsageError(`the user name must be 1-64 characters of A-Z a-z 0-9 _ . @ -, got '${name}'`);
    }
    const role = values.role ?? 'publisher';
    if (!isSensorRole(role)) throw new UsageError(`--role must be one of ${SENSOR_ROLES.join(', ')}, got '${role}'`);
    const sensors = parseSensorScope(values.sensors ?? '+');
    if (typeof sensors === 'object' && 'error' in sensors) throw new UsageError(`--sensors: ${sensors.error}`);
    const params = { ...DEFAULT_SCRYPT_PARAMS };
    if (values.cost !== undefined) {
      params.ln = /^\d{1,2}$/.test(values.cost) ? Number(values.cost) : Number.NaN;
      const refused = checkScryptParams(params);
      if (refused) throw new UsageError(`--cost: ${refused}`);
    }
    if (values.create && values['password-file'] === undefined) throw new UsageError('--create needs --password-file');

    const passwordFile = values['password-file'];
    const text = passwordFile === undefined ? await io.readStdin() : await readPassword(passwordFile, values.create);
    const password = text.split(/\r?\n/)[0] ?? '';
    if (password === '') throw new Error(`the password is empty (${passwordFile ?? 'standard input'})`);
    io.log(formatSensorUserLine({ name, password: await hashPassword(password, params), role, sensors }));
    return 0;
  } catch (error) {
    io.error(`error: ${(error as Error).message}`);
    if (error instanceof UsageError) {
      io.error(USAGE);
      return 2;
    }
    return 1;
  }
}

async function readPassword(path: string, create: boolean | undefined): Promise<string> {
  if (create) {
    const generated = randomBytes(32).toString('base64url');
    try {
      await writeFile(path, `${generated}\n`, { mode: 0o600, flag: 'wx' });
      return generated;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  return readFile(path, 'utf8');
}

async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  runSensorUserCli(process.argv.slice(2), { log: console.log, error: console.error, readStdin: readAllStdin }).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
