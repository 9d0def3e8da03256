/** Logger for edge tests: silent unless LOG_LEVEL is set. */
import { pino, type Logger } from 'pino';

export function edgeTestLogger(): Logger {
  return pino({ name: 'edge-test', level: process.env.LOG_LEVEL ?? 'silent' });
}
