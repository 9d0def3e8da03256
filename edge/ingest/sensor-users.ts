/**
 * The sensor users file (SENSOR_USERS_FILE) and what a sensor user may do (pure: no I/O).
 *
 *   # comments and blank lines are ignored
 *   NAME:HASH[:ROLE[:SENSORS]]
 *
 *   NAME     1-64 characters of A-Z a-z 0-9 _ . @ -
 *   HASH     $scrypt$ln=…,r=…,p=…$salt$hash (./sensor-passwords.ts; `npm run sensor-user` writes lines)
 *   ROLE     publisher (default): publishes readings, subscribes to nothing
 *            reader: subscribes under sensors/, publishes nothing
 *            both: both
 *            app: a local application (G6): subscribes under sensors/ and local/ (commands handed
 *            to it on local/commands/{type}, config on local/config/{key}), publishes only its
 *            answers on local/commands/{commandId}/result
 *   SENSORS  + (default): any sensor id; or a comma-separated list of sensor ids: the user may
 *            publish only on sensors/{one of them}/… and subscribe only to filters
 *            sensors/{one of them}/…; the rest of the line, since sensor ids may contain ':'
 *
 * A parse error names the line number and never quotes the line (it holds a password hash).
 */
import { TOPIC_ID_PATTERN } from '../../schemas/limits.js';
import { formatPasswordHash, parsePasswordHash, type PasswordHash } from './sensor-passwords.js';

export const SENSOR_ROLES = ['publisher', 'reader', 'both', 'app'] as const;
export type SensorRole = (typeof SENSOR_ROLES)[number];

/** 'any', or the sensor ids the user is limited to */
export type SensorScope = 'any' | readonly string[];

export interface SensorUser {
  name: string;
  password: PasswordHash;
  role: SensorRole;
  sensors: SensorScope;
}

export const SENSOR_USER_NAME_PATTERN = /^[A-Za-z0-9_.@-]{1,64}$/;

export function isSensorRole(value: string): value is SensorRole {
  return (SENSOR_ROLES as readonly string[]).includes(value);
}

/** `+` or a comma-separated list of sensor ids; a reason when it is neither. */
export function parseSensorScope(text: string): SensorScope | { error: string } {
  if (text === '+') return 'any';
  const ids = text.split(',');
  const bad = ids.find((id) => !TOPIC_ID_PATTERN.test(id));
  if (bad !== undefined) {
    return { error: `sensor ids must be '+' or a comma-separated list of ids (A-Z a-z 0-9 _ . : -, 1-64 characters)` };
  }
  return [...new Set(ids)];
}

export function formatSensorUserLine(user: SensorUser): string {
  const sensors = user.sensors === 'any' ? '+' : user.sensors.join(',');
  return `${user.name}:${formatPasswordHash(user.password)}:${user.role}:${sensors}`;
}

export function parseSensorUsers(text: string): { users: SensorUser[] } | { error: string } {
  const users: SensorUser[] = [];
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `line ${index + 1}`;
    const [name = '', hashText = '', role = 'publisher', ...rest] = line.split(':');
    const sensors = rest.length === 0 ? '+' : rest.join(':');
    if (!SENSOR_USER_NAME_PATTERN.test(name)) {
      return { error: `${where}: the user name must be 1-64 characters of A-Z a-z 0-9 _ . @ -` };
    }
    if (users.some((user) => user.name === name)) return { error: `${where}: user '${name}' appears twice` };
    const password = parsePasswordHash(hashText);
    if ('error' in password) return { error: `${where} (user '${name}'): ${password.error}` };
    if (!isSensorRole(role)) {
      return { error: `${where} (user '${name}'): the role must be one of ${SENSOR_ROLES.join(', ')}` };
    }
    const scope = parseSensorScope(sensors);
    if (typeof scope === 'object' && 'error' in scope) return { error: `${where} (user '${name}'): ${scope.error}` };
    users.push({ name, password, role, sensors: scope });
  }
  if (users.length === 0) return { error: 'no users in the file (lines NAME:HASH[:ROLE[:SENSORS]])' };
  return { users };
}
