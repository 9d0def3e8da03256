/**
 * `npm run bench:rest`: request rate and latency of the REST API's hottest read,
 * GET /api/v1/sync/status/:deviceId (the seed's getDeviceSyncStatus: the sync_status row, the
 * live commands, the device's presence), over mutual TLS, measured with autocannon 8.0.0.
 *
 *   npm run bench:rest -- [--devices 1000] [--connections 16] [--duration 10] [--commands 2]
 *
 * Starts PostgreSQL (embedded, SERIALIZABLE), the broker and the bridge as their own processes
 * (broker/main.ts, bridge/main.ts with API_PORT, exactly as deployed), fills `--devices` devices
 * with a sync_status row and `--commands` live commands each, then runs two loads of `--duration`
 * seconds each after a 2 s warm-up:
 *   operator  one operator certificate, the requests cycling over every device's status;
 *   device    one device certificate reading its own status (the device-side poll).
 * Prints requests/s and the latency percentiles (p50, p90, p99, max) per load, the non-2xx
 * answers and errors, and the bridge's CPU seconds per 1,000 requests (from /proc). Results
 * also go to .data/bench-rest/result.json. autocannon runs in this process (one thread), the
 * bridge in its own: on a 2-core machine they compete for the CPU, so the rate is a floor.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon, { type Result } from 'autocannon';
import { closeDatabase, openDatabase } from '../bridge/db/connection.js';
import { ensureDevCertificates } from '../certs/dev-bundle.js';
import { readTlsFiles } from '../common/tls-files.js';
import { startControlPlaneProcesses, type ControlPlaneProcesses } from '../devtools/control-plane-processes.js';
import { startEmbeddedPostgres } from '../devtools/embedded-postgres.js';
import { freePort } from '../devtools/free-port.js';

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '16' },
    duration: { type: 'string', default: '10' },
    commands: { type: 'string', default: '2' },
  },
});
const devices = Number(args.devices);
const connections = Number(args.connections);
const duration = Number(args.duration);
const commandsPerDevice = Number(args.commands);
if (![devices, connections, duration, commandsPerDevice].every((n) => Number.isInteger(n) && n >= 0) || devices < 1) {
  process.stderr.write('--devices, --connections, --duration and --commands take whole numbers (devices ≥ 1)\n');
  process.exit(2);
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const dataDir = resolve('.data', 'bench-rest');
rmSync(join(dataDir, 'logs'), { recursive: true, force: true });
mkdirSync(join(dataDir, 'logs'), { recursive: true });

/** device ids 00000000-0000-4000-8000-{n}, valid UUIDs v4 in one sortable spelling */
const deviceId = (n: number) => `b0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const OWN_DEVICE = deviceId(0);

const certificates = await ensureDevCertificates({
  dir: join(dataDir, 'certs'),
  serviceNames: ['bridge'],
  operatorNames: ['bench'],
  deviceIds: [OWN_DEVICE],
  brokerHosts: ['127.0.0.1', 'localhost'],
});
const operatorFiles = certificates.operators['bench'];
const deviceFiles = certificates.devices[OWN_DEVICE];
const bridgeFiles = certificates.services['bridge'];
if (!operatorFiles || !deviceFiles || !bridgeFiles) throw new Error('certificates missing');

const postgres = await startEmbeddedPostgres({ port: await freePort(), persistent: false });
let controlPlane: ControlPlaneProcesses | undefined;
let exitCode = 0;
try {
  // broker/main.ts and bridge/main.ts (with API_PORT) as their own processes, as deployed; the
  // API's server certificate is the dev bundle's server certificate for 127.0.0.1
  controlPlane = await startControlPlaneProcesses({
    certificates,
    databaseUrl: postgres.connectionString,
    logDir: join(dataDir, 'logs'),
  });
  const { apiPort } = controlPlane;
  const bridgePid = controlPlane.pid('bridge');

  const db = openDatabase({ connectionString: postgres.connectionString, applicationName: 'bench-rest' });
  try {
    await db.none(
      `INSERT INTO devices (device_id, device_name, device_type, status, last_seen_at)
       SELECT ('b0000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'bench ' || g, 'edge', 'online', now()
         FROM generate_series(0, $1 - 1) g;
       INSERT INTO sync_status (device_id, last_sync_at, last_sync_status, pending_records_count, total_synced_records)
       SELECT device_id, now(), 'success', 0, 1000 FROM devices;
       INSERT INTO commands (device_id, command_type, payload, status)
       SELECT d.device_id, 'ping', '{}'::jsonb, 'pending' FROM devices d, generate_series(1, $2);
       ANALYZE`,
      [devices, commandsPerDevice],
    );
  } finally {
    await closeDatabase(db);
  }
  say(
    `bench:rest: ${devices} devices with ${commandsPerDevice} live commands each; ${connections} connections, ${duration} s per load`,
  );

  const url = `https://127.0.0.1:${apiPort}`;
  const tlsOf = (files: { certPath: string; keyPath: string }) => {
    const tls = readTlsFiles({ caPath: certificates.ca.certPath, ...files });
    return { ca: tls.ca, cert: tls.cert, key: tls.key };
  };
  const loads = [
    {
      name: 'operator',
      tlsOptions: tlsOf(operatorFiles),
      requests: Array.from({ length: devices }, (_, n) => ({ path: `/api/v1/sync/status/${deviceId(n)}` })),
    },
    {
      name: 'device',
      tlsOptions: tlsOf(deviceFiles),
      requests: [{ path: `/api/v1/sync/status/${OWN_DEVICE}` }],
    },
  ];
  const results: Record<string, unknown> = {};
  say('load       req/s   p50 ms  p90 ms  p99 ms  max ms   2xx      non-2xx  errors  bridge CPU ms/1k req');
  for (const load of loads) {
    await autocannon({ url, connections, duration: 2, tlsOptions: load.tlsOptions, requests: load.requests });
    const cpuBefore = processCpuMs(bridgePid);
    const result: Result = await autocannon({
      url,
      connections,
      duration,
      tlsOptions: load.tlsOptions,
      requests: load.requests,
    });
    const cpuMs = processCpuMs(bridgePid) - cpuBefore;
    const total = result['2xx'] + result.non2xx;
    const cpuPerThousand = total === 0 ? 0 : (cpuMs / total) * 1000;
    say(
      `${load.name.padEnd(9)} ${result.requests.average.toFixed(0).padStart(6)}  ${fmt(result.latency.p50)}  ${fmt(result.latency.p90)}  ${fmt(result.latency.p99)}  ${fmt(result.latency.max)}  ${String(result['2xx']).padStart(7)}  ${String(result.non2xx).padStart(7)}  ${String(result.errors).padStart(6)}  ${cpuPerThousand.toFixed(0).padStart(6)}`,
    );
    results[load.name] = {
      requestsPerSecond: result.requests.average,
      latencyMs: {
        p50: result.latency.p50,
        p90: result.latency.p90,
        p99: result.latency.p99,
        max: result.latency.max,
      },
      ok: result['2xx'],
      non2xx: result.non2xx,
      errors: result.errors,
      bridgeCpuMsPer1000: cpuPerThousand,
    };
    if (result.non2xx > 0 || result.errors > 0) exitCode = 1;
  }
  writeFileSync(
    join(dataDir, 'result.json'),
    JSON.stringify({ devices, connections, duration, commandsPerDevice, results }, null, 2),
  );
  say(`results: ${join(dataDir, 'result.json')}`);
} catch (error) {
  process.stderr.write(`bench:rest failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  exitCode = 1;
} finally {
  await controlPlane?.close();
  await postgres.close();
}
process.exit(exitCode);

function fmt(ms: number): string {
  return ms.toFixed(1).padStart(6);
}

/** user + system CPU of a process from /proc/{pid}/stat, in ms (0 where /proc does not exist). */
function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / 100;
  } catch {
    return 0;
  }
}
