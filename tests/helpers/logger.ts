/**
 * Loggers for tests. testLogger: silent unless LOG_LEVEL is set (then it logs at that level, to
 * debug a failing test). capturedLogger: every line at debug level kept in memory as parsed JSON,
 * for tests that assert what a component logged.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export function testLogger(name = 'test'): Logger {
  return pino({ name, level: process.env.LOG_LEVEL ?? 'silent' });
}

export interface LogLine {
  msg: string;
  [field: string]: unknown;
}

export interface CapturedLog {
  logger: Logger;
  /** every line so far, in order */
  lines: LogLine[];
  /** the lines with this message whose fields equal the given ones */
  logged: (msg: string, fields?: Record<string, unknown>) => LogLine[];
}

export function capturedLogger(): CapturedLog {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  return {
    logger: pino({ level: 'debug' }, sink),
    lines,
    logged: (msg, fields = {}) =>
      lines.filter((line) => line.msg === msg && Object.entries(fields).every(([key, value]) => line[key] === value)),
  };
}
