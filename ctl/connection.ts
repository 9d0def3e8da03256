/**
 * How ctl reaches the REST API: the URL and the operator's TLS files, from flags or else the
 * environment (CTL_URL, CTL_CA, CTL_CERT, CTL_KEY; ctl's own environment loader, on
 * common/env.ts and the one TLS-files type of common/tls-files.ts), and one HTTPS request with
 * that client certificate. A failure to connect (refused, TLS refused, timeout) is a
 * ConnectionFailure, which ctl maps to its exit code 2.
 */
import { request as httpsRequest, type Agent } from 'node:https';
import { ConfigError, envOptional, type Env } from '../common/env.js';
import { readTlsFiles, type TlsFiles } from '../common/tls-files.js';

export const DEFAULT_CTL_URL = 'https://127.0.0.1:8443';

export interface CtlConnection {
  url: string;
  tls: TlsFiles;
  timeoutMs: number;
  /** keep-alive connections for a client sending many requests (benchmarks); default: one per request */
  agent?: Agent;
}

export interface ConnectionFlags {
  url?: string | undefined;
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

export function connectionFrom(flags: ConnectionFlags, env: Env): CtlConnection {
  const url = flags.url ?? envOptional(env, 'CTL_URL') ?? DEFAULT_CTL_URL;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`CTL_URL must be an https:// URL, got '${url}'`);
  }
  if (parsed.protocol !== 'https:') throw new ConfigError(`CTL_URL must be an https:// URL, got '${url}'`);
  const pick = (flag: string | undefined, variable: string, option: string): string => {
    const value = flag ?? envOptional(env, variable);
    if (value === undefined) {
      throw new ConfigError(`${variable} (or ${option}) is required: the API takes operator certificates only`);
    }
    return value;
  };
  const tls = readTlsFiles(
    {
      caPath: pick(flags.ca, 'CTL_CA', '--ca'),
      certPath: pick(flags.cert, 'CTL_CERT', '--cert'),
      keyPath: pick(flags.key, 'CTL_KEY', '--key'),
    },
    { ca: 'CTL_CA', cert: 'CTL_CERT', key: 'CTL_KEY' },
  );
  return { url: parsed.origin, tls, timeoutMs: 30_000 };
}

export class ConnectionFailure extends Error {
  override name = 'ConnectionFailure';
}

export interface HttpAnswer {
  status: number;
  body: unknown;
}

export function send(connection: CtlConnection, method: string, path: string, body?: unknown): Promise<HttpAnswer> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise<HttpAnswer>((resolve, reject) => {
    const request = httpsRequest(
      new URL(path, connection.url),
      {
        method,
        ca: connection.tls.ca,
        cert: connection.tls.cert,
        key: connection.tls.key,
        agent: connection.agent ?? false,
        timeout: connection.timeoutMs,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', (error) => reject(new ConnectionFailure(error.message)));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text === '' ? null : JSON.parse(text);
          } catch {
            // not JSON: kept as text
          }
          resolve({ status: response.statusCode ?? 0, body: parsed });
        });
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${connection.timeoutMs} ms`)));
    request.on('error', (error: NodeJS.ErrnoException) =>
      reject(new ConnectionFailure(`cannot reach ${connection.url}: ${error.code ?? ''} ${error.message}`.trim())),
    );
    request.end(payload);
  });
}
