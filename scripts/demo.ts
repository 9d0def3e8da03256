/**
 * `npm run demo`: the whole system on an embedded PostgreSQL, with an uplink outage.
 *
 * Three edge agents with four simulated sensors each publish readings; device 2's uplink is cut
 * for a while (its agent keeps accepting readings, pending rises) and restored (pending drains).
 * At the end every reading a sensor got a PUBACK for must be in the control-plane database
 * exactly once; the demo exits non-zero if not.
 *
 * Commands and config (./demo-downstream.ts) go through the REST API as an operator would: a ping
 * to every device and a config key while all are online, then a set-setting, a sync-now and a new
 * config version while device 2 is cut off (they stay `pending` until its uplink returns). The demo
 * prints every transition and each command's journey, and exits non-zero unless every command was
 * executed and every config key reported applied at its current version.
 *
 *   npm run demo                 run the scenario and exit
 *   npm run demo -- --keep       keep everything running afterwards for inspection (Ctrl-C stops)
 *
 * Component logs (JSON, pino) go to .data/demo/system.log; the terminal shows the dashboard.
 */
import { rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import mqtt from 'mqtt';
import { SENSOR_READINGS_FILTER } from '../schemas/topics.js';
import { rowCountsByDevice, startLocalSystem, type LocalDevice } from '../devtools/local-system.js';
import { connectSensor, standardSensors, type SimulatedSensor } from '../devtools/sensor-simulator.js';
import { DemoDownstream } from './demo-downstream.js';

const DEMO_DEVICE_IDS = [
  '1d7c3f0a-5b2e-4c8d-9a61-0e4f2b7c8d01',
  '2e8d4a1b-6c3f-4d9e-8b72-1f5a3c8d9e02',
  '3f9e5b2c-7d4a-4eaf-9c83-2a6b4d9eaf03',
];
const SENSORS_PER_DEVICE = 4;
const READINGS_PER_SECOND_PER_SENSOR = 10;
const OUTAGE_DEVICE_INDEX = 1;
const OUTAGE_START_S = 6;
const OUTAGE_END_S = 18;
const COMMANDS_ONLINE_S = 3;
const COMMANDS_DURING_OUTAGE_S = 9;
const SENSORS_STOP_S = 24;
const DRAIN_TIMEOUT_S = 60;

const keepRunning = process.argv.includes('--keep');
const dataDir = join('.data', 'demo');
rmSync(dataDir, { recursive: true, force: true });
mkdirSync(dataDir, { recursive: true });
const logFile = join(dataDir, 'system.log');
const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' }, pino.destination({ dest: logFile, sync: false }));

const say = (line: string) => process.stdout.write(`${line}\n`);
const short = (deviceId: string) => deviceId.slice(0, 8);
const pad = (value: string | number, width: number) => String(value).padStart(width);

say('Starting: embedded PostgreSQL (SERIALIZABLE), dev certificates, mTLS Aedes broker, bridge, 3 edge agents…');
const system = await startLocalSystem({
  deviceIds: DEMO_DEVICE_IDS,
  dataDir,
  certDir: join('certs', 'dev'),
  logger,
  // the demo's timeline is seconds long: look for writes of other instances and re-send unconfirmed reports often
  downstream: { pollMs: 250 },
});
say(`  PostgreSQL  ${system.postgres.connectionString.replace(/:[^:@]*@/, ':***@')}`);
say(`  broker      mqtts://127.0.0.1:${system.broker.port}  (TLS 1.3, client certificates required)`);
say(`  bridge      metrics http://127.0.0.1:${system.bridge.httpPort ?? '-'}/metrics`);
say(`  REST API    ${system.api.url}/api/v1/openapi.json  (mutual TLS, operator certificate)`);
for (const device of system.devices) say(`  edge agent  ${device.deviceId}  sensors on ${device.sensorUrl}`);
say(`  logs        ${logFile}`);

const sensorsByDevice = new Map<string, SimulatedSensor[]>();
for (const device of system.devices) {
  sensorsByDevice.set(
    device.deviceId,
    await Promise.all(standardSensors(SENSORS_PER_DEVICE).map((spec) => connectSensor(device.sensorUrl, spec))),
  );
}

// Show the edge's clear error for a malformed reading: watch the first device's error notices.
const firstDevice = system.devices[0] as LocalDevice;
const watcher = await mqtt.connectAsync(firstDevice.sensorUrl, { clientId: 'demo-error-watcher' });
await watcher.subscribeAsync(`${SENSOR_READINGS_FILTER}/error`, { qos: 1 });
watcher.on('message', (topic, payload) =>
  say(`  ! ${short(firstDevice.deviceId)} rejected a reading on ${topic}: ${payload.toString()}`),
);

const startedAt = Date.now();
const elapsedSeconds = () => (Date.now() - startedAt) / 1000;
let outage: 'before' | 'cut' | 'restored' = 'before';
const downstream = new DemoDownstream(system.api, say);
let commandsPhase: 'none' | 'online' | 'outage' = 'none';

const publishTimers = [...sensorsByDevice.values()].flat().map((sensor) =>
  setInterval(() => {
    if (sensor.inFlight() >= 200) return; // a sensor with that many unacknowledged readings waits
    sensor.publishReading().catch((error: Error) => logger.warn({ err: error.message }, 'sensor publish failed'));
  }, 1000 / READINGS_PER_SECOND_PER_SENSOR),
);
const stopSensors = () => publishTimers.forEach(clearInterval);

const malformed = setTimeout(() => {
  const sensor = sensorsByDevice.get(firstDevice.deviceId)?.[0];
  void sensor?.publishRaw('{"value": "warm"}');
}, 3000);

function acknowledgedCount(deviceId: string): number {
  return (sensorsByDevice.get(deviceId) ?? []).reduce((sum, sensor) => sum + sensor.acknowledged.length, 0);
}

async function printDashboard(): Promise<void> {
  const rows = await rowCountsByDevice(system.db);
  const header = `t=${pad(elapsedSeconds().toFixed(0), 3)}s  device    uplink   acked  pending  syncing   synced  failed  rows in DB`;
  const lines = await Promise.all(
    system.devices.map(async (device) => {
      const stats = await device.agent.stats();
      const uplink = device.uplink.isCut() ? 'CUT    ' : stats.connected ? 'online ' : 'offline';
      return `         ${short(device.deviceId)}  ${uplink}${pad(acknowledgedCount(device.deviceId), 6)}${pad(stats.pending, 9)}${pad(stats.syncing, 9)}${pad(stats.synced, 9)}${pad(stats.failed, 8)}${pad(rows.get(device.deviceId) ?? 0, 12)}`;
    }),
  );
  say([header, ...lines].join('\n'));
}

async function scenarioTick(): Promise<void> {
  const outageDevice = system.devices[OUTAGE_DEVICE_INDEX] as LocalDevice;
  const t = elapsedSeconds();
  if (outage === 'before' && t >= OUTAGE_START_S) {
    outage = 'cut';
    outageDevice.uplink.cut();
    say(
      `\n>>> cutting the uplink of ${short(outageDevice.deviceId)}: its sensors keep publishing, readings stay pending in libSQL\n`,
    );
  }
  if (commandsPhase === 'none' && t >= COMMANDS_ONLINE_S) {
    commandsPhase = 'online';
    say('\n>>> commands and config through the REST API, every device online\n');
    for (const device of system.devices) {
      await downstream.sendCommand(device.deviceId, 'ping', {});
      await downstream.setConfig(device.deviceId, 'agent.syncIntervalMs', 2000);
    }
    await downstream.setConfig(firstDevice.deviceId, 'display.brightness', 80);
  } else if (commandsPhase === 'online' && t >= COMMANDS_DURING_OUTAGE_S) {
    commandsPhase = 'outage';
    say(`\n>>> commands and config while ${short(outageDevice.deviceId)} is cut off: they stay pending for it\n`);
    await downstream.sendCommand(outageDevice.deviceId, 'set-setting', { key: 'agent.logLevel', value: 'debug' });
    await downstream.sendCommand(outageDevice.deviceId, 'sync-now', {});
    for (const device of system.devices) await downstream.setConfig(device.deviceId, 'agent.syncIntervalMs', 1000);
  }
  await downstream.poll();
  if (outage === 'cut' && t >= OUTAGE_END_S) {
    outage = 'restored';
    outageDevice.uplink.restore();
    say(`\n>>> restoring the uplink of ${short(outageDevice.deviceId)}: pending readings drain, oldest first\n`);
  }
  await printDashboard();
}

while (elapsedSeconds() < SENSORS_STOP_S) {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await scenarioTick();
}
stopSensors();
clearTimeout(malformed);
say('\n>>> sensors stopped; waiting until every acknowledged reading is confirmed by the bridge\n');
await Promise.all(
  [...sensorsByDevice.values()].flat().map(async (sensor) => {
    while (sensor.inFlight() > 0) await new Promise((resolve) => setTimeout(resolve, 50));
  }),
);

async function drained(): Promise<boolean> {
  const rows = await rowCountsByDevice(system.db);
  for (const device of system.devices) {
    const stats = await device.agent.stats();
    if (stats.pending > 0 || stats.syncing > 0) return false;
    if ((rows.get(device.deviceId) ?? 0) < acknowledgedCount(device.deviceId)) return false;
  }
  return true;
}
const drainDeadline = Date.now() + DRAIN_TIMEOUT_S * 1000;
while (!(await drained()) && Date.now() < drainDeadline) {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await printDashboard();
}
await printDashboard();

say('\nResult: every reading a sensor got a PUBACK for, exactly once in the database?');
let allMatch = true;
for (const device of system.devices) {
  const acknowledgedIds = new Set(
    (sensorsByDevice.get(device.deviceId) ?? []).flatMap((sensor) => sensor.acknowledged.map((r) => r.id)),
  );
  const stored = await system.db.any<{ id: string }>('SELECT id::text AS id FROM telemetry_data WHERE device_id = $1', [
    device.deviceId,
  ]);
  const storedIds = new Set(stored.map((row) => row.id));
  const missing = [...acknowledgedIds].filter((id) => !storedIds.has(id)).length;
  const unexpected = [...storedIds].filter((id) => !acknowledgedIds.has(id)).length;
  const ok = missing === 0 && unexpected === 0 && stored.length === acknowledgedIds.size;
  allMatch &&= ok;
  say(
    `  ${device.deviceId}: ${pad(acknowledgedIds.size, 5)} acknowledged, ${pad(stored.length, 5)} rows` +
      `  (${missing} missing, ${unexpected} unexpected)  ${ok ? 'MATCH' : 'MISMATCH'}`,
  );
}
const syncLog = await Promise.all(system.devices.map((device) => device.agent.stats()));
say(
  `  failed on the edge: ${syncLog.reduce((sum, stats) => sum + stats.failed, 0)}, rejected at the sensor listener: ${syncLog.reduce((sum, stats) => sum + stats.rejectedReadings, 0)}`,
);
say(allMatch ? '\nOK: the row counts match.' : '\nFAILED: the row counts do not match (see .data/demo/system.log).');

await downstream.settle(Date.now() + DRAIN_TIMEOUT_S * 1000);
const downstreamOk = await downstream.report();
say(
  downstreamOk
    ? '\nOK: every command executed, every config key applied at its current version.'
    : '\nFAILED: a command did not execute or a config key is not applied (see .data/demo/system.log).',
);

if (keepRunning) {
  const observer = system.certificates.observers['explorer'];
  // keep some live traffic to look at: one reading per sensor every 2 s
  const slowTimers = [...sensorsByDevice.values()]
    .flat()
    .map((sensor) => setInterval(() => void sensor.publishReading().catch(() => undefined), 2000));
  process.once('SIGINT', () => slowTimers.forEach(clearInterval));
  say('\nStill running, sensors publishing slowly (Ctrl-C stops). Inspect the cluster traffic with:');
  say(
    `  mosquitto_sub -h 127.0.0.1 -p ${system.broker.port} -i explorer -q 1 -t 'devices/#' -v --cafile ${system.certificates.ca.certPath}` +
      ` --cert ${observer?.certPath ?? ''} --key ${observer?.keyPath ?? ''}`,
  );
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
}

await watcher.endAsync();
await Promise.all([...sensorsByDevice.values()].flat().map((sensor) => sensor.close()));
await system.close();
logger.flush();
process.exit(allMatch && downstreamOk ? 0 : 1);
