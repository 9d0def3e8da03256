/**
 * Refuses an incoming MQTT packet by its declared length, before its body is buffered. Shared by
 * the two processes that embed aedes: the broker (broker/server.ts, payload limit
 * MAX_PAYLOAD_BYTES) and the edge agent's sensor listener (edge/ingest/sensor-listener.ts, payload
 * limit MAX_SENSOR_PAYLOAD_BYTES).
 *
 * Neither aedes 1.2.0 nor its mqtt-packet 9 parser has a size limit: aedes creates the parser with
 * `mqtt.parser()` (lib/client.js) and the parser buffers a whole packet of up to 256 MiB before
 * anything (authorizePublish included) sees it. The parser reads the "remaining length" in its
 * `_parseLength` state, so this wraps that state on the client's parser instance: when the declared
 * length is too large, the parser fails with an error, which makes aedes close the connection.
 *
 * This touches aedes/mqtt-packet internals (`client._parser`, `_parseLength`, `_emitError`,
 * `packet.length`). The shape is checked per connection; when it does not match (a future aedes),
 * `limitIncomingPacketSize` returns false, the caller logs it, and the payload limit is still
 * enforced after parsing (the broker's publish ACL, broker/acl.ts; the edge's reading normalizer,
 * edge/ingest/reading-normalizer.ts), with the whole packet in memory.
 *
 * The limit leaves room for a topic of any length (up to 65,535 bytes) on top of the payload limit,
 * so a publish whose payload is within the limit is never refused here, whatever its topic.
 */
import type { Client } from 'aedes';

/** Fixed-header overhead on top of the payload: topic (2 + up to 65535 bytes) and packet id (2). */
const PUBLISH_HEADER_ALLOWANCE = 2 + 65_535 + 2;

/** The largest packet to accept for a given payload limit: the payload plus a maximal topic. */
export function maxPacketBytesFor(maxPayloadBytes: number): number {
  return maxPayloadBytes + PUBLISH_HEADER_ALLOWANCE;
}

export class PacketTooLargeError extends Error {
  override name = 'PacketTooLargeError';
  constructor(
    readonly declaredBytes: number,
    readonly maxBytes: number,
    readonly command: string,
  ) {
    super(`${command} packet of ${declaredBytes} bytes exceeds the limit of ${maxBytes} bytes`);
  }
}

interface MqttPacketParserInternals {
  packet: { cmd?: string; length: number };
  _parseLength: () => boolean;
  _emitError: (error: Error) => void;
}

function isParser(value: unknown): value is MqttPacketParserInternals {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<MqttPacketParserInternals>;
  return (
    typeof candidate._parseLength === 'function' &&
    typeof candidate._emitError === 'function' &&
    typeof candidate.packet === 'object'
  );
}

// G7 (partial): bounded memory per connection: an oversize packet is refused before buffering
/**
 * Installs the limit on one client's parser; call right after `aedes.handle(socket)`.
 * Returns false when the parser does not have the expected shape (nothing installed).
 */
export function limitIncomingPacketSize(
  client: Client,
  maxBytes: number,
  onRefused: (error: PacketTooLargeError) => void,
): boolean {
  const parser = (client as unknown as { _parser?: unknown })._parser;
  if (!isParser(parser)) return false;
  const parseLength = parser._parseLength;
  parser._parseLength = function parseLengthWithLimit(this: MqttPacketParserInternals): boolean {
    const complete = parseLength.call(this);
    if (complete && this.packet.length > maxBytes) {
      const error = new PacketTooLargeError(this.packet.length, maxBytes, this.packet.cmd ?? 'unknown');
      onRefused(error);
      this._emitError(error);
      return false;
    }
    return complete;
  };
  return true;
}
