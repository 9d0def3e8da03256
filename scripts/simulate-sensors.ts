/**
 * Simulated sensors for one edge agent, as a process (docker-compose uses it):
 *
 *   EDGE_SENSOR_URL   mqtt://host:port of the edge agent's sensor listener (default mqtt://127.0.0.1:1883)
 *   SENSOR_COUNT      how many sensors (default 4)
 *   READINGS_PER_SECOND  per sensor (default 2)
 *   DURATION_SECONDS  stop after this long (default: run until SIGINT/SIGTERM)
 *   SENSOR_USERNAME   log in as this sensor user (the edge's SENSOR_USERS_FILE); default anonymous
 *   SENSOR_PASSWORD_FILE  its password: the first line of this file (docker-compose: a generated
 *                     file, see docker-compose.yml)
 *   SENSOR_PASSWORD   its password itself, instead of SENSOR_PASSWORD_FILE (visible in the
 *                     process environment: prefer the file)
 */
import { readFileSync } from 'node:fs';
import { ConfigError, envInt, envOptional, envString } from '../common/env.js';
import { createLogger } from '../common/logger.js';
import {
  connectSensor,
  standardSensors,
  type SensorCredentials,
  type SimulatedSensor,
} from '../devtools/sensor-simulator.js';

const log = createLogger('sensors');
const url = envString(process.env, 'EDGE_SENSOR_URL', 'mqtt://127.0.0.1:1883');
const count = envInt(process.env, 'SENSOR_COUNT', 4, { min: 1, max: 1000 });
const rate = envInt(process.env, 'READINGS_PER_SECOND', 2, { min: 1, max: 10_000 });
const durationRaw = envOptional(process.env, 'DURATION_SECONDS');
const durationSeconds = durationRaw === undefined ? undefined : envInt(process.env, 'DURATION_SECONDS', 0, { min: 1 });

const credentials = credentialsFromEnv();

function credentialsFromEnv(): SensorCredentials | undefined {
  const username = envOptional(process.env, 'SENSOR_USERNAME');
  const passwordFile = envOptional(process.env, 'SENSOR_PASSWORD_FILE');
  const inline = envOptional(process.env, 'SENSOR_PASSWORD');
  if (username === undefined) {
    if (passwordFile !== undefined || inline !== undefined) {
      throw new ConfigError('SENSOR_PASSWORD_FILE and SENSOR_PASSWORD need SENSOR_USERNAME');
    }
    return undefined;
  }
  if ((passwordFile === undefined) === (inline === undefined)) {
    throw new ConfigError('SENSOR_USERNAME needs exactly one of SENSOR_PASSWORD_FILE and SENSOR_PASSWORD');
  }
  const password = inline ?? readFileSync(passwordFile!, 'utf8').split(/\r?\n/)[0] ?? '';
  return { username, password };
}

const sensors: SimulatedSensor[] = await Promise.all(
  standardSensors(count).map((spec) => connectSensor(url, spec, credentials)),
);
log.info({ url, count, rate, username: credentials?.username }, 'sensors publishing');

const timers = sensors.map((sensor) =>
  setInterval(() => {
    // bounded: a sensor that cannot get PUBACKs (edge down) stops piling up readings
    if (sensor.inFlight() >= 100) return;
    sensor
      .publishReading()
      .catch((error: Error) => log.warn({ sensor: sensor.spec.sensorId, err: error.message }, 'publish failed'));
  }, 1000 / rate),
);
const report = setInterval(() => {
  const total = sensors.reduce((sum, sensor) => sum + sensor.acknowledged.length, 0);
  log.info({ acknowledged: total }, 'readings acknowledged by the edge');
}, 10_000);

async function stop(): Promise<void> {
  timers.forEach(clearInterval);
  clearInterval(report);
  await Promise.all(sensors.map((sensor) => sensor.close()));
  process.exit(0);
}
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
if (durationSeconds !== undefined) setTimeout(() => void stop(), durationSeconds * 1000);
