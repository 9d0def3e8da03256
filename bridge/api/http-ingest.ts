/**
 * The HTTP telemetry fallback (POST /api/v1/sync/telemetry) goes through the same ingest as MQTT:
 * the request body, as received, is handed to the ingest pipeline's public entry point
 * (IngestPipeline.accept) as if it had arrived on devices/{id}/telemetry, with {id} the device's
 * certificate CN. So it gets the same parse and validation (telemetry-message.ts), the same
 * batching, the same idempotent, conflict-resolving write (telemetry-writer.ts, G4), the same
 * poison isolation (G5), and the same ack body as sync/ack (schemas/sync-ack.schema.json), which
 * arrives only after the commit (G2). The ack is the HTTP response instead of an MQTT publish.
 *
 * A message the pipeline releases (the bridge is shutting down) or that is not answered within
 * `timeoutMs` (the database is down and the pipeline keeps retrying it) is answered 503: the
 * device sends the batch again, and a re-send adds no rows.
 */
import type { SyncAck } from '../../schemas/messages.js';
import { topics } from '../../schemas/topics.js';
import type { InboundMessage } from '../ingest/ingest-pipeline.js';
import { ApiError } from './errors.js';

export type TelemetryIngest = (message: InboundMessage) => void;

export function ingestOverHttp(
  accept: TelemetryIngest,
  deviceId: string,
  payload: Buffer,
  timeoutMs: number,
): Promise<SyncAck> {
  return new Promise<SyncAck>((resolve, reject) => {
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      outcome();
    };
    const timer = setTimeout(
      () =>
        settle(() =>
          reject(
            new ApiError(
              503,
              'unavailable',
              `the batch was not committed within ${timeoutMs} ms (database unavailable?); send it again, a re-send adds no rows`,
            ),
          ),
        ),
      timeoutMs,
    );
    const release = () =>
      settle(() =>
        reject(
          new ApiError(
            503,
            'unavailable',
            'the bridge is shutting down; send the batch again (a re-send adds no rows)',
          ),
        ),
      );
    accept({
      topic: topics.telemetry(deviceId),
      payload,
      committed: () => undefined,
      ack: () => undefined,
      isStale: () => false,
      release,
      respond: (ack) => settle(() => resolve(ack)),
    });
  });
}
