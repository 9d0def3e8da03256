/**
 * `npm run bench:downstream`: commands and config at fleet size, through the real control plane.
 *
 *   npm run bench:downstream -- [--devices 1000] [--agents 5] [--commands 500] [--rate 50]
 *                               [--concurrency 16]
 *
 * Starts PostgreSQL (embedded, SERIALIZABLE), the broker and the bridge as their own processes
 * (broker/main.ts, bridge/main.ts with its REST API), then connects `--devices` devices:
 * `--agents` of them are real edge agents (startEdgeAgent: libSQL command_queue, reports re-sent
 * until confirmed), the rest are contract devices (devtools/contract-device.ts: one mqtt.js
 * connection each that answers on the wire as an agent does, so a thousand fit in this process).
 * Every device has its own certificate (devtools/fleet-certificates.ts).
 *
 * 1. Command round trip, every device online: `--commands` ping commands created through the REST
 *    API (POST /api/v1/commands, operator certificate) at `--rate` per second, spread over the
 *    devices round-robin (the real agents included). Round trip = from just before the POST to
 *    the moment an observer on the broker sees the command's retained topic cleared, which the
 *    bridge publishes after it committed `executed`. Printed: median, p90, p99, max, separately
 *    for the real agents; and every command's final status from the database.
 * 2. Config rollout: one config key set for every device through the REST API (PUT, `--concurrency`
 *    requests at a time); time from the first PUT until the database shows every device's
 *    reported version equal to the desired one and `applied` (the "lagging" query).
 *
 * autocannon is not used here: each request is timed itself. Results are printed and written to
 * .data/bench-downstream/result.json. On a 2-core machine the broker, the bridge, PostgreSQL and
 * this process (devices, agents, observer) share the CPU: the numbers are an upper bound.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Agent } from 'node:https';
import { createSecureContext } from 'node:tls';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { closeDatabase, openDatabase } from '../bridge/db/connection.js';
import { readTlsFiles } from '../common/tls-files.js';
import { send, type CtlConnection } from '../ctl/connection.js';
import { connectContractDevice, type ContractDevice } from '../devtools/contract-device.js';
import { startControlPlaneProcesses } from '../devtools/control-plane-processes.js';
import { startEmbeddedPostgres } from '../devtools/embedded-postgres.js';
import { fleetCertificates } from '../devtools/fleet-certificates.js';
import { freePort } from '../devtools/free-port.js';
import { startEdgeAgent, type EdgeAgent } from '../edge/agent.js';
import { parseDeviceTopic } from '../schemas/topics.js';

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    agents: { type: 'string', default: '5' },
    commands: { type: 'string', default: '500' },
    rate: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '16' },
  },
});
const int = (name: keyof typeof args, min: number): number => {
  const value = Number(args[name]);
  if (!Number.isInteger(value) || value < min) {
    process.stderr.write(`--${name} must be an integer ≥ ${min}, got '${String(args[name])}'\n`);
    process.exit(2);
  }
  return value;
};
const DEVICES = int('devices', 1);
const AGENTS = Math.min(int('agents', 0), DEVICES);
const COMMANDS = int('commands', 1);
const RATE = int('rate', 1);
const CONCURRENCY = int('concurrency', 1);

const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const dataDir = resolve('.data', 'bench-downstream');
rmSync(join(dataDir, 'run'), { recursive: true, force: true });
mkdirSync(join(dataDir, 'run'), { recursive: true });
const logger = pino({ level: 'warn' }, pino.destination({ dest: join(dataDir, 'run', 'bench.log'), sync: false }));

const fleet = await fleetCertificates(join(dataDir, 'certs'), DEVICES, {
  serviceNames: ['bridge'],
  observerNames: ['explorer'],
  operatorNames: ['bench'],
});
if (fleet.issuedSeconds > 0) say(`issued ${DEVICES} device certificates in ${fleet.issuedSeconds.toFixed(1)} s`);
const { bundle } = fleet;
const operatorFiles = bundle.operators['bench'];
const observerFiles = bundle.observers['explorer'];
if (!operatorFiles || !observerFiles) throw new Error('certificates missing');

const postgres = await startEmbeddedPostgres({ port: await freePort(), persistent: false });
const cleanup: Array<() => Promise<unknown>> = [() => postgres.close()];
const closeAll = async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
};

try {
  const controlPlane = await startControlPlaneProcesses({
    certificates: bundle,
    databaseUrl: postgres.connectionString,
    logDir: join(dataDir, 'run'),
  });
  cleanup.push(() => controlPlane.close());
  const brokerUrl = `mqtts://127.0.0.1:${controlPlane.brokerPort}`;
  const db = openDatabase({ connectionString: postgres.connectionString, applicationName: 'bench-downstream' });
  cleanup.push(() => closeDatabase(db));
  await db.none(
    `INSERT INTO devices (device_id, device_name, device_type)
     SELECT id::uuid, 'bench device', 'edge' FROM unnest($1::text[]) AS id`,
    [fleet.certs.map((device) => device.id)],
  );

  // the devices: the first AGENTS are real edge agents, the rest contract devices
  const connectStarted = Date.now();
  const agents: EdgeAgent[] = [];
  for (const { id, cert } of fleet.certs.slice(0, AGENTS)) {
    const agent = await startEdgeAgent({
      deviceId: id,
      dbUrl: `file:${join(dataDir, 'run', `edge-${id}.db`)}`,
      sensorPort: 0,
      brokerUrl,
      tls: { ca: fleet.ca, cert, key: fleet.key },
      logger,
    });
    agents.push(agent);
    cleanup.push(() => agent.close());
  }
  const contractDevices: ContractDevice[] = [];
  const pending = fleet.certs.slice(AGENTS);
  while (pending.length > 0) {
    // 50 handshakes at a time: the broker admits 250/s, and this keeps the loop responsive
    const wave = pending.splice(0, 50);
    contractDevices.push(
      ...(await Promise.all(
        wave.map(({ id, cert }) =>
          connectContractDevice(brokerUrl, id, {
            ca: fleet.ca,
            secureContext: createSecureContext({ ca: fleet.ca, cert, key: fleet.key }),
          }),
        ),
      )),
    );
  }
  cleanup.push(() => Promise.all(contractDevices.map((device) => device.close())));
  while ((await Promise.all(agents.map((agent) => agent.stats()))).some((stats) => !stats.connected)) await sleep(100);
  say(
    `bench:downstream: ${DEVICES} devices connected in ${((Date.now() - connectStarted) / 1000).toFixed(1)} s ` +
      `(${AGENTS} edge agents, ${DEVICES - AGENTS} contract devices); broker, bridge and PostgreSQL as processes`,
  );

  // the observer: sees each command's retained topic cleared after `executed` is committed
  const clearedAt = new Map<string, number>();
  const observer = await mqtt.connectAsync(brokerUrl, {
    clientId: 'explorer',
    ...readTlsFiles({ caPath: bundle.ca.certPath, ...observerFiles }),
  });
  cleanup.push(() => observer.endAsync(true));
  observer.on('message', (topic, payload) => {
    const parsed = parseDeviceTopic(topic);
    if (parsed?.kind === 'command' && parsed.subject !== undefined && payload.length === 0) {
      if (!clearedAt.has(parsed.subject)) clearedAt.set(parsed.subject, Date.now());
    }
  });
  await observer.subscribeAsync('devices/+/commands/+', { qos: 1 });

  const api: CtlConnection = {
    url: `https://127.0.0.1:${controlPlane.apiPort}`,
    tls: readTlsFiles({ caPath: bundle.ca.certPath, ...operatorFiles }),
    timeoutMs: 30_000,
    // keep-alive: an operator tool sending hundreds of requests reuses its TLS connections
    agent: new Agent({ keepAlive: true, maxSockets: CONCURRENCY }),
  };

  // 1. command round trip
  const agentIds = new Set(fleet.certs.slice(0, AGENTS).map((device) => device.id));
  const created: { commandId: string; deviceId: string; startedAt: number }[] = [];
  const creations: Promise<void>[] = [];
  const roundStart = Date.now();
  for (let index = 0; index < COMMANDS; index++) {
    const due = roundStart + (index * 1000) / RATE;
    if (due > Date.now()) await sleep(due - Date.now());
    const deviceId = (fleet.certs[index % DEVICES] as { id: string }).id;
    const startedAt = Date.now();
    creations.push(
      send(api, 'POST', '/api/v1/commands', { deviceId, type: 'ping', payload: {} }).then((answer) => {
        if (answer.status !== 201) throw new Error(`POST /api/v1/commands answered ${answer.status}`);
        created.push({ commandId: (answer.body as { commandId: string }).commandId, deviceId, startedAt });
      }),
    );
  }
  await Promise.all(creations);
  const commandDeadline = Date.now() + 120_000;
  while (created.some((command) => !clearedAt.has(command.commandId)) && Date.now() < commandDeadline) await sleep(200);
  const statuses = await db.any<{ status: string; n: string }>(
    'SELECT status, count(*) AS n FROM commands GROUP BY status ORDER BY status',
  );
  const roundTrips = (filter: (deviceId: string) => boolean) =>
    created
      .filter((command) => filter(command.deviceId) && clearedAt.has(command.commandId))
      .map((command) => (clearedAt.get(command.commandId) ?? 0) - command.startedAt)
      .sort((a, b) => a - b);
  const all = roundTrips(() => true);
  const viaAgents = roundTrips((deviceId) => agentIds.has(deviceId));
  const pct = (sorted: number[], q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  const summary = (sorted: number[]) => ({
    n: sorted.length,
    p50: pct(sorted, 0.5),
    p90: pct(sorted, 0.9),
    p99: pct(sorted, 0.99),
    max: sorted.at(-1) ?? NaN,
  });
  const commandResult = { all: summary(all), agents: summary(viaAgents) };
  say(
    `\n1. command round trip (POST → executed committed and the retained topic cleared), ${COMMANDS} pings at ${RATE}/s:`,
  );
  const line = (name: string, s: ReturnType<typeof summary>) =>
    say(`   ${name.padEnd(22)} n=${s.n}  median ${s.p50} ms  p90 ${s.p90} ms  p99 ${s.p99} ms  max ${s.max} ms`);
  line('all devices', commandResult.all);
  line(`real edge agents (${AGENTS})`, commandResult.agents);
  say(`   final statuses in the database: ${statuses.map((row) => `${row.status} ${row.n}`).join(', ')}`);

  // 2. config rollout to every device
  const key = 'agent.syncIntervalMs';
  const rolloutStart = Date.now();
  const queue = fleet.certs.map((device) => device.id);
  let putErrors = 0;
  let firstPutError = null as string | null;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let deviceId = queue.shift(); deviceId !== undefined; deviceId = queue.shift()) {
        const answer = await send(api, 'PUT', `/api/v1/devices/${deviceId}/config/${key}`, { value: 15_000 });
        if (answer.status !== 200) {
          putErrors += 1;
          firstPutError ??= `${answer.status} ${JSON.stringify(answer.body)}`;
        }
      }
    }),
  );
  const putsDoneMs = Date.now() - rolloutStart;
  const lagging = async () =>
    Number(
      (
        await db.one<{ n: string }>(
          `SELECT count(*) AS n FROM device_configs
            WHERE config_key = $1 AND (reported_version IS DISTINCT FROM version OR reported_status IS DISTINCT FROM 'applied')`,
          [key],
        )
      ).n,
    );
  let left = await lagging();
  const rolloutDeadline = Date.now() + 120_000;
  while (left > 0 && Date.now() < rolloutDeadline) {
    await sleep(100);
    left = await lagging();
  }
  const rolloutMs = Date.now() - rolloutStart;
  say(`\n2. config rollout: ${key} to ${DEVICES} devices through the REST API (${CONCURRENCY} requests at a time):`);
  say(
    `   all ${DEVICES} PUTs answered after ${putsDoneMs} ms (${putErrors} errors${firstPutError === null ? '' : `; first: ${firstPutError}`})`,
  );
  say(
    left === 0
      ? `   every device reported 'applied' at the new version ${rolloutMs} ms after the first PUT`
      : `   ${left} devices still not applied after ${rolloutMs} ms`,
  );

  const result = {
    at: new Date().toISOString(),
    devices: DEVICES,
    agents: AGENTS,
    commands: { count: COMMANDS, rate: RATE, ...commandResult, statuses },
    config: { devices: DEVICES, concurrency: CONCURRENCY, putsDoneMs, rolloutMs, notApplied: left, putErrors },
  };
  writeFileSync(join(dataDir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
  const exactlyOnce = contractDevices.every((device) => [...device.executed.values()].every((count) => count === 1));
  if (!exactlyOnce) say('   a contract device ran a command twice');
  api.agent?.destroy();
  await closeAll();
  logger.flush();
  process.exit(left === 0 && all.length === COMMANDS && exactlyOnce ? 0 : 1);
} catch (error) {
  process.stderr.write(`bench:downstream failed: ${(error as Error).stack ?? String(error)}\n`);
  await closeAll();
  process.exit(1);
}
