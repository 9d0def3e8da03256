/**
 * What the REST API needs of the command and config services (./../downstream/, G6): exactly the
 * methods it calls, so a test can stand in for them and the API never reaches into their
 * internals. The running bridge passes `bridge.downstream`. Their failures are DownstreamError
 * (code not-found, device-not-found, invalid, conflict; httpStatus 400, 404 or 409), which
 * ./errors.ts turns into the standard error body as they stand.
 */
import type { CommandService } from '../downstream/command-service.js';
import type { ConfigService } from '../downstream/config-service.js';

export interface DownstreamPort {
  commands: Pick<CommandService, 'create' | 'get' | 'list' | 'liveForDevice' | 'cancel' | 'report'>;
  config: Pick<ConfigService, 'set' | 'delete' | 'get' | 'list' | 'lagging'>;
}
