/**
 * Simulated sensors for one edge agent, as a process (docker-compose uses it):
 *
 *   EDGE_SENSOR_URL   mqtt://host:port of the edge agent's sensor listener (default mqtt://127.0.0.1:1883)
 *   SENSOR_COUNT      how many sensors (default 4)
 *   READINGS_PER_SECOND  per sensor (default 2)
 *   DURATION_SECONDS  stop after this long (default: run until SIGINT/SIGTERM)
 */
import { envInt, envOptional, envString } from '../common/env.js';
import { createLogger } from '../common/logger.js';
import { connectSensor, standardSensors, type SimulatedSensor } from '../devtools/sensor-simulator.js';

const log = createLogger('sensors');
const url = envString(process.env, 'EDGE_SENSOR_URL', 'mqtt://127.0.0.1:1883');
const count = envInt(process.env, 'SENSOR_COUNT', 4, { min: 1, max: 1000 });
const rate = envInt(process.env, 'READINGS_PER_SECOND', 2, { min: 1, max: 10_000 });
const durationRaw = envOptional(process.env, 'DURATION_SECONDS');
const durationSeconds = durationRaw === undefined ? undefined : envInt(process.env, 'DURATION_SECONDS', 0, { min: 1 });

const sensors: SimulatedSensor[] = await Promise.all(standardSensors(count).map((spec) => connectSensor(url, spec)));
log.info({ url, count, rate }, 'sensors publishing');

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
