/**
 * Who a sensor connection is, and what it may publish and subscribe to (pure decisions, each
 * refusal with a reason).
 *
 * A connection's principal comes from ./sensor-authentication.ts: a user of the users file (its
 * role and sensor ids), a verified client certificate (role both, any sensor), or, where the
 * listener accepts anonymous clients, the anonymous principal (role both, any sensor: the
 * listener's behaviour before authentication existed, for loopback).
 *
 *   publisher  may publish; may not subscribe
 *   reader     may subscribe under sensors/; may not publish
 *   both       both
 *   app        a local application (G6): may subscribe under sensors/ and local/, and publish
 *              only its answers on local/commands/{commandId}/result
 *
 * Local applications (local/…): the app role, and a principal with role both for any sensor
 * (a verified client certificate, or anonymous on loopback: the machine's own processes). Which
 * answer is expected is decided later: an answer for a command that is not waiting is ignored
 * with a log (edge/downstream/downstream.ts), so a client cannot invent results.
 *
 * With a list of sensor ids, publishing is allowed only on sensors/{id}/… and subscribing only to
 * filters sensors/{id}/… for an id of the list (a wildcard in that level is refused). Every
 * principal may subscribe only under sensors/. Whether a permitted publish is a valid reading is
 * decided after this, by the topic shape and ./reading-normalizer.ts.
 */
import { parseLocalCommandResultTopic } from '../../schemas/topics.js';
import type { SensorRole, SensorScope } from './sensor-users.js';

export interface SensorPrincipal {
  /** the user name, the certificate's CN, or '(anonymous)' */
  name: string;
  via: 'password' | 'certificate' | 'anonymous';
  role: SensorRole;
  sensors: SensorScope;
}

export const ANONYMOUS_SENSOR: SensorPrincipal = {
  name: '(anonymous)',
  via: 'anonymous',
  role: 'both',
  sensors: 'any',
};

export type AccessDecision = { allowed: true } | { allowed: false; reason: string };

const ALLOWED: AccessDecision = { allowed: true };

function who(principal: SensorPrincipal): string {
  return principal.via === 'anonymous' ? 'an anonymous client' : `'${principal.name}'`;
}

function sensorLevel(topicOrFilter: string): string | undefined {
  const levels = topicOrFilter.split('/');
  return levels[0] === 'sensors' && levels.length >= 2 ? levels[1] : undefined;
}

/** Whether the principal is a local application (may use local/…). */
export function isLocalApplication(principal: SensorPrincipal): boolean {
  return principal.role === 'app' || (principal.role === 'both' && principal.sensors === 'any');
}

export function decideSensorPublish(principal: SensorPrincipal, topic: string): AccessDecision {
  if (parseLocalCommandResultTopic(topic) !== null) {
    return isLocalApplication(principal)
      ? ALLOWED
      : { allowed: false, reason: `${who(principal)} is not a local application and may not publish on '${topic}'` };
  }
  if (principal.role === 'app') {
    return {
      allowed: false,
      reason: `${who(principal)} has the app role and may publish only on local/commands/{commandId}/result, not on '${topic}'`,
    };
  }
  if (principal.role === 'reader') {
    return { allowed: false, reason: `${who(principal)} has the reader role and may not publish` };
  }
  if (principal.sensors !== 'any') {
    const sensorId = sensorLevel(topic);
    if (sensorId === undefined || !principal.sensors.includes(sensorId)) {
      return {
        allowed: false,
        reason: `${who(principal)} may publish only on sensors/{${principal.sensors.join(',')}}/…, not on '${topic}'`,
      };
    }
  }
  return ALLOWED;
}

export function decideSensorSubscribe(principal: SensorPrincipal, filter: string): AccessDecision {
  if (principal.role === 'publisher') {
    return { allowed: false, reason: `${who(principal)} has the publisher role and may not subscribe` };
  }
  if (filter.startsWith('local/')) {
    return isLocalApplication(principal)
      ? ALLOWED
      : { allowed: false, reason: `${who(principal)} is not a local application and may not subscribe to '${filter}'` };
  }
  if (!filter.startsWith('sensors/')) {
    return {
      allowed: false,
      reason: `sensor clients may subscribe only under sensors/ (local applications also under local/), not to '${filter}'`,
    };
  }
  if (principal.sensors !== 'any') {
    const sensorId = sensorLevel(filter);
    if (sensorId === undefined || !principal.sensors.includes(sensorId)) {
      return {
        allowed: false,
        reason: `${who(principal)} may subscribe only to sensors/{${principal.sensors.join(',')}}/…, not to '${filter}'`,
      };
    }
  }
  return ALLOWED;
}
