/**
 * G6: config ordering on the edge (pure). A desired message is applied only when its version is
 * newer than the newest version the edge has handled for the key (applied or rejected), so
 * out-of-order delivery (version 3, then 2) never downgrades, also after a restart (the handled
 * version is stored in device_config). A pending report is confirmed when the retained desired
 * message carries reportedVersion at or past it.
 */
import type { ConfigDesired } from '../../schemas/messages.js';

export interface StoredConfigState {
  /** newest version handled */
  version: number;
  reportConfirmed: boolean;
}

export interface ConfigDecision {
  apply: boolean;
  /** the stored report is confirmed by this message */
  confirm: boolean;
}

export function decideConfig(desired: ConfigDesired, stored: StoredConfigState | null): ConfigDecision {
  if (stored === null) return { apply: true, confirm: false };
  const confirm =
    !stored.reportConfirmed && desired.reportedVersion !== undefined && desired.reportedVersion >= stored.version;
  return { apply: desired.version > stored.version, confirm };
}
