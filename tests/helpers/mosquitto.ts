/**
 * The Eclipse Mosquitto command-line clients (mosquitto_pub, mosquitto_sub, on the PATH) as a
 * third-party MQTT implementation against the broker: mutual TLS from the certificate files of a
 * test bundle, clientId = CN.
 */
import { execFile } from 'node:child_process';

export interface MosquittoResult {
  /** the exit code (mosquitto_sub -W: 27 when the timeout elapsed) */
  code: number;
  stdout: string;
  stderr: string;
}

export interface MosquittoIdentity {
  caPath: string;
  certPath: string;
  keyPath: string;
  clientId: string;
}

/** -h/-p/-i and the TLS options for `identity` against 127.0.0.1:`port`. */
export function mosquittoConnectArgs(port: number, identity: MosquittoIdentity): string[] {
  return [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-i',
    identity.clientId,
    '--cafile',
    identity.caPath,
    '--cert',
    identity.certPath,
    '--key',
    identity.keyPath,
  ];
}

export function runMosquitto(
  command: 'mosquitto_pub' | 'mosquitto_sub',
  args: string[],
  timeoutMs = 15_000,
): Promise<MosquittoResult> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(new Error(`${command} did not run: ${error.message}\n${stderr}`));
        return;
      }
      resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
    });
  });
}
