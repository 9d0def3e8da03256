/**
 * The bridge's parse worker thread (bridge/ingest/parse-pool.ts): reads telemetry messages with
 * the same pure function as the event loop (telemetry-message.ts, parseTelemetryMessage) and,
 * for a batch, also writes each valid reading's VALUES tuple (telemetry-writer.ts,
 * telemetryTuple), so that neither the validation and hashing nor the SQL formatting of a large
 * message runs on the event loop that carries every device's transactions (G7).
 *
 * Protocol: a ParseRequest in, a ParseResponse out with the same id; one request at a time, in
 * order. An exception (none is expected: every bad input is a value) is answered as `failed`.
 */
import { parentPort } from 'node:worker_threads';
import { parseTelemetryMessage, type ParsedTelemetryMessage } from './telemetry-message.js';
import { telemetryTuple } from './telemetry-writer.js';

export interface ParseRequest {
  id: number;
  topic: string;
  payload: Uint8Array;
}

export type ParseResponse =
  | { id: number; kind: 'parsed'; parsed: ParsedTelemetryMessage; tuples: string[] }
  | { id: number; kind: 'failed'; message: string };

parentPort?.on('message', (request: ParseRequest) => {
  let response: ParseResponse;
  try {
    const payload = Buffer.from(request.payload.buffer, request.payload.byteOffset, request.payload.byteLength);
    const parsed = parseTelemetryMessage(request.topic, payload);
    response = {
      id: request.id,
      kind: 'parsed',
      parsed,
      tuples: parsed.kind === 'batch' ? parsed.records.map(telemetryTuple) : [],
    };
  } catch (error) {
    response = { id: request.id, kind: 'failed', message: error instanceof Error ? error.message : String(error) };
  }
  parentPort?.postMessage(response);
});
