/**
 * G6: the agent settings a device applies live (schemas/agent-settings.schema.json), one code path
 * for the config keys agent.* and the set-setting command. A value is checked against its schema
 * first (checkAgentSetting): an invalid one is refused with the reason and the previous value
 * stays. Deleting a key (a cleared config topic) returns the setting to the value the agent was
 * started with. Pure apart from the target it drives (the uplink's timer and batch size, the
 * logger's level), which is injected.
 */
import type { AgentSettingKey, AgentSettings } from '../../schemas/messages.js';
import { checkAgentSetting, type Validation } from '../../schemas/validators.js';

export type AgentSettingValues = Required<AgentSettings>;

export interface AgentSettingsTarget {
  setSyncIntervalMs(ms: number): void;
  setBatchMaxRecords(records: number): void;
  setLogLevel(level: AgentSettingValues['agent.logLevel']): void;
}

export class LiveAgentSettings {
  readonly #defaults: AgentSettingValues;
  readonly #current: AgentSettingValues;
  readonly #target: AgentSettingsTarget;

  constructor(defaults: AgentSettingValues, target: AgentSettingsTarget) {
    this.#defaults = { ...defaults };
    this.#current = { ...defaults };
    this.#target = target;
  }

  /** Validates and applies one setting; the previous value stays when it is refused. */
  apply(key: string, value: unknown): Validation<unknown> {
    const checked = checkAgentSetting(key, value);
    if (!checked.ok) return checked;
    this.#set(key as AgentSettingKey, value);
    return { ok: true, value };
  }

  /** Back to the value the agent was configured with. */
  reset(key: string): void {
    if (key in this.#defaults) this.#set(key as AgentSettingKey, this.#defaults[key as AgentSettingKey]);
  }

  get current(): Readonly<AgentSettingValues> {
    return this.#current;
  }

  #set(key: AgentSettingKey, value: unknown): void {
    switch (key) {
      case 'agent.syncIntervalMs':
        this.#current[key] = value as number;
        this.#target.setSyncIntervalMs(value as number);
        break;
      case 'agent.batchMaxRecords':
        this.#current[key] = value as number;
        this.#target.setBatchMaxRecords(value as number);
        break;
      case 'agent.logLevel':
        this.#current[key] = value as AgentSettingValues['agent.logLevel'];
        this.#target.setLogLevel(value as AgentSettingValues['agent.logLevel']);
        break;
    }
  }
}
