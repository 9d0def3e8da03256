/** Limits shared by edge, broker and bridge. Changing one is a contract change. */

/** Most readings in one devices/{id}/telemetry message. */
export const MAX_BATCH_RECORDS = 1000;

/** Largest MQTT payload the cluster broker accepts (bytes). */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;

/** Largest telemetry batch the edge builds (bytes of JSON); below MAX_PAYLOAD_BYTES with headroom. */
export const MAX_BATCH_BYTES = 768 * 1024;

/**
 * Most rejections a sync/ack lists (issue 7: an ack for 90k tiny records was as large as the
 * message). The rest are counted in `rejectedCount`; see schemas/messages.ts SyncAck.
 */
export const MAX_SYNC_ACK_REJECTIONS = 100;

/** Ids and reasons in a sync/ack are clipped to this many characters (a device's input is echoed). */
export const MAX_SYNC_ACK_TEXT_CHARS = 200;

/** Largest sensor reading payload the edge accepts (bytes). */
export const MAX_SENSOR_PAYLOAD_BYTES = 16 * 1024;

/**
 * How far a devices/{id}/status `at` may lie ahead of the broker's clock. A status from the future
 * would win against every later status under the "later `at` wins" rule (docs/contract.md, Status
 * and will) and stay retained as the truth about the device; 5 minutes is far above NTP-synced
 * skew. There is no bound into the past: a device that boots without a real-time clock reports
 * 1970 until NTP answers, and an old `at` loses against any newer one anyway.
 */
export const MAX_STATUS_FUTURE_SKEW_MS = 5 * 60 * 1000;

/**
 * Most revoked certificates the revocation list on control/revocations carries (maxItems in
 * schemas/revocation-list.schema.json): 25,000 serials of up to 128 bits fit MAX_PAYLOAD_BYTES
 * with room to spare (~35 bytes each). A cluster that revokes more must replace its CA.
 */
export const MAX_REVOKED_CERTIFICATES = 25_000;

/** Allowed characters of a sensorId or dataType topic level. */
export const TOPIC_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

/** Device ids are UUIDs (the CN of the device certificate). */
export const DEVICE_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Command types: lower-case, one topic level (local/commands/{type} on the edge). */
export const COMMAND_TYPE_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Config keys: one topic level, never 'reported' (devices/{id}/config/reported is the report
 * topic). Keys starting with 'agent.' are agent settings (schemas/agent-settings.schema.json).
 */
export const CONFIG_KEY_PATTERN = /^(?!reported$)[A-Za-z0-9_.:-]{1,64}$/;

/** Largest command payload (bytes of JSON), so a retained command always fits MAX_PAYLOAD_BYTES. */
export const MAX_COMMAND_PAYLOAD_BYTES = 64 * 1024;

/** Largest command result (bytes of JSON of the whole report). */
export const MAX_COMMAND_RESULT_BYTES = 64 * 1024;

/** Largest config value (bytes of JSON). */
export const MAX_CONFIG_VALUE_BYTES = 64 * 1024;

/** Default lifetime of a command without an explicit expiry (7 days); the bridge's COMMAND_DEFAULT_TTL_MS overrides it. */
export const DEFAULT_COMMAND_TTL_MS = 7 * 24 * 60 * 60 * 1000;
