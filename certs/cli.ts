/**
 * Certificate tool for local development: `npx tsx certs/cli.ts <command> [options]`.
 * Run without arguments (or with `help`) for usage. Everything is written under --dir
 * (default certs/dev, git-ignored).
 */
import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isDeviceId } from '../schemas/topics.js';
import { CertificateError, type CertificateRole } from './authority.js';
import {
  DEFAULT_BROKER_HOSTS,
  ensureApiCertificate,
  ensureBrokerCertificate,
  ensureClientCertificate,
  ensureDevCertificates,
  openCertificateAuthority,
  type EnsuredCertificate,
} from './dev-bundle.js';
import { EXTENDED_KEY_USAGE, summarizeCertificate } from './inspect.js';
import { DEFAULT_CERTIFICATE_DIR, assertClientId, roleFolder } from './layout.js';
import { listRevocationsFromCli, revokeFromCli, writeCrlFromCli } from './revocation-commands.js';

export interface CliOutput {
  log(line: string): void;
  error(line: string): void;
}

const USAGE = `usage: npx tsx certs/cli.ts <command> [options]

commands:
  init                          create the certificate authority (ca.crt, ca.key)
  broker --host H [--host H]    issue the broker's server certificate (default hosts: ${DEFAULT_BROKER_HOSTS.join(', ')})
  api --host H [--host H]       issue the REST API's server certificate, api.crt (same default hosts)
  device [--id UUID]            issue a device certificate (a new UUID is generated when --id is omitted)
  service --name NAME           issue a service certificate (e.g. bridge)
  observer --name NAME          issue a read-only observer certificate (e.g. explorer)
  operator --name NAME          issue an operator certificate for the REST API and ctl (e.g. alice)
  dev [--devices N]             everything for a local demo: CA, broker, service 'bridge',
                                observer 'explorer', operator 'admin', the REST API's server
                                certificate and at least N device certificates (default 1)
  inspect FILE                  print subject, issuer, validity and usages of a certificate

revocation (on the control plane's database, DATABASE_URL):
  revoke --serial HEX [--cn NAME] | --cert FILE  [--reason TEXT]
                                revoke a client certificate: the broker nodes close its
                                connections and refuse it within seconds (the bridge publishes
                                the list); --cn is found under --dir when omitted
  revocations                   list the revoked certificates
  crl --out FILE [--days N]     write a CRL signed by the CA under --dir, next update in N days
                                (default 7), e.g. for the broker's BROKER_CRL_FILE

options:
  --dir DIR                     certificate folder (default ${DEFAULT_CERTIFICATE_DIR})
  --days N                      validity of newly issued certificates in days (default 365)`;

const OPTIONS = {
  dir: { type: 'string' },
  host: { type: 'string', multiple: true },
  id: { type: 'string' },
  name: { type: 'string' },
  devices: { type: 'string' },
  days: { type: 'string' },
  serial: { type: 'string' },
  cert: { type: 'string' },
  cn: { type: 'string' },
  reason: { type: 'string' },
  out: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * Runs one command; resolves to the process exit code (0 ok, 1 failure, 2 usage error). `env`
 * gives DATABASE_URL to the revocation commands.
 */
export async function runCertificateCli(
  argv: string[],
  out: CliOutput,
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    out.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (command === undefined || command === 'help' || values.help) {
    out.log(USAGE);
    return 0;
  }
  const dir = values.dir ?? DEFAULT_CERTIFICATE_DIR;
  try {
    const validDays = values.days === undefined ? undefined : parsePositiveInteger('--days', values.days);
    switch (command) {
      case 'init': {
        const opened = await openCertificateAuthority(dir, { createIfMissing: true });
        report(out, 'certificate authority', opened);
        return 0;
      }
      case 'broker': {
        const opened = await openCertificateAuthority(dir, { createIfMissing: false });
        const label = values.host === undefined ? 'broker' : `broker (${values.host.join(', ')})`;
        report(out, label, await ensureBrokerCertificate(opened, values.host, validDays));
        return 0;
      }
      case 'api': {
        const opened = await openCertificateAuthority(dir, { createIfMissing: false });
        const label = values.host === undefined ? 'api' : `api (${values.host.join(', ')})`;
        report(out, label, await ensureApiCertificate(opened, values.host, validDays));
        return 0;
      }
      case 'device': {
        const id = values.id ?? randomUUID();
        assertClientId('device', id);
        if (values.id === undefined) out.log(`device id: ${id}`);
        return await issueClient(out, dir, 'device', id, validDays);
      }
      case 'service':
      case 'observer':
      case 'operator':
        return await issueClient(out, dir, command, requireOption('--name', values.name), validDays);
      case 'dev':
        return await issueDevelopmentSet(out, dir, values.devices, values.host, validDays);
      case 'inspect':
        return await inspect(out, rest[0]);
      case 'revoke':
        await revokeFromCli(
          {
            databaseUrl: env['DATABASE_URL'],
            dir,
            serial: values.serial,
            certFile: values.cert,
            commonName: values.cn,
            reason: values.reason,
          },
          out,
        );
        return 0;
      case 'revocations':
        await listRevocationsFromCli(env['DATABASE_URL'], out);
        return 0;
      case 'crl':
        await writeCrlFromCli(
          {
            databaseUrl: env['DATABASE_URL'],
            dir,
            outFile: values.out,
            days: values.days === undefined ? undefined : parsePositiveInteger('--days', values.days),
          },
          out,
        );
        return 0;
      default:
        out.error(`unknown command '${command}'\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof CertificateError) {
      out.error(`error: ${error.message}`);
      return 1;
    }
    throw error;
  }
}

async function issueClient(
  out: CliOutput,
  dir: string,
  role: CertificateRole,
  id: string,
  validDays: number | undefined,
): Promise<number> {
  assertClientId(role, id);
  const opened = await openCertificateAuthority(dir, { createIfMissing: false });
  report(out, `${role} ${id}`, await ensureClientCertificate(opened, role, id, validDays));
  return 0;
}

async function issueDevelopmentSet(
  out: CliOutput,
  dir: string,
  devicesOption: string | undefined,
  hosts: string[] | undefined,
  validDays: number | undefined,
): Promise<number> {
  const wanted = devicesOption === undefined ? 1 : parsePositiveInteger('--devices', devicesOption);
  const existing = await existingDeviceIds(dir);
  const deviceIds = [...existing];
  while (deviceIds.length < wanted) deviceIds.push(randomUUID());
  const bundle = await ensureDevCertificates({
    dir,
    deviceIds,
    serviceNames: ['bridge'],
    observerNames: ['explorer'],
    operatorNames: ['admin'],
    ...(hosts === undefined ? {} : { brokerHosts: hosts }),
    ...(validDays === undefined ? {} : { validDays }),
  });
  out.log(`certificate authority  ${bundle.ca.certPath}`);
  out.log(`broker                 ${bundle.broker.certPath}`);
  const api = await ensureApiCertificate(
    await openCertificateAuthority(dir, { createIfMissing: false }),
    hosts,
    validDays,
  );
  out.log(`api                    ${api.certPath}`);
  for (const [name, files] of Object.entries(bundle.services)) out.log(`service ${name.padEnd(15)}${files.certPath}`);
  for (const [name, files] of Object.entries(bundle.observers)) out.log(`observer ${name.padEnd(14)}${files.certPath}`);
  for (const [name, files] of Object.entries(bundle.operators)) out.log(`operator ${name.padEnd(14)}${files.certPath}`);
  for (const [id, files] of Object.entries(bundle.devices)) out.log(`device ${id}  ${files.certPath}`);
  return 0;
}

async function existingDeviceIds(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(roleFolder(dir, 'device'));
  } catch {
    return [];
  }
  return names
    .filter((name) => extname(name) === '.crt')
    .map((name) => basename(name, '.crt'))
    .filter(isDeviceId)
    .sort();
}

async function inspect(out: CliOutput, file: string | undefined): Promise<number> {
  if (file === undefined)
    throw new CertificateError('inspect needs a certificate file, e.g. inspect certs/dev/broker.crt');
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (error) {
    throw new CertificateError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  let summary;
  try {
    summary = summarizeCertificate(pem);
  } catch {
    throw new CertificateError(`${file} is not a PEM certificate`);
  }
  const now = Date.now();
  const state =
    now < summary.validFrom.getTime() ? ' (NOT YET VALID)' : now > summary.validTo.getTime() ? ' (EXPIRED)' : '';
  const usages = summary.extendedKeyUsage.map(
    (oid) => Object.entries(EXTENDED_KEY_USAGE).find(([, known]) => known === oid)?.[0] ?? oid,
  );
  out.log(`file:       ${file}`);
  out.log(`CN:         ${summary.commonName ?? '(none)'}`);
  out.log(`OU (role):  ${summary.organizationalUnit ?? '(none)'}`);
  out.log(`issuer CN:  ${summary.issuerCommonName ?? '(none)'}`);
  out.log(`valid:      ${summary.validFrom.toISOString()} → ${summary.validTo.toISOString()}${state}`);
  out.log(`CA:         ${summary.isCertificateAuthority ? 'yes' : 'no'}`);
  if (usages.length > 0) out.log(`usage:      ${usages.join(', ')}`);
  if (summary.subjectAltNames.length > 0) out.log(`alt names:  ${summary.subjectAltNames.join(', ')}`);
  out.log(`serial:     ${summary.serialNumber}`);
  out.log(`sha256:     ${summary.fingerprint256}`);
  return 0;
}

function report(out: CliOutput, what: string, result: EnsuredCertificate): void {
  const verb = result.created ? 'created' : 'kept existing';
  out.log(`${verb} ${what}: ${result.certPath} (key ${result.keyPath})`);
}

function requireOption(name: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new CertificateError(`${name} is required`);
  return value;
}

function parsePositiveInteger(name: string, raw: string): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1)
    throw new CertificateError(`${name} must be a positive integer, got '${raw}'`);
  return value;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  runCertificateCli(process.argv.slice(2), { log: console.log, error: console.error }).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
