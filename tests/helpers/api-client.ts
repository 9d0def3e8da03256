/**
 * HTTPS requests to the REST API (bridge/api/) with a client certificate, as a device or an
 * operator would send them: node:https, a fresh connection per request unless an agent is given
 * (so a revocation test can also hold one open). The body is parsed as JSON when it is JSON.
 */
import { request as httpsRequest, type Agent } from 'node:https';
import type { TlsFiles } from '../../common/tls-files.js';

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** parsed JSON, or the text when it is not JSON */
  body: unknown;
  text: string;
}

export interface ApiRequest {
  method?: string;
  path: string;
  /** an object is sent as JSON; a string or Buffer as it is */
  body?: unknown;
  headers?: Record<string, string>;
  agent?: Agent;
}

/** The error body's fields, for assertions. */
export function errorOf(response: ApiResponse): { code: string; message: string; details?: unknown } {
  return (response.body as { error: { code: string; message: string; details?: unknown } }).error;
}

export function apiRequest(baseUrl: string, tls: Partial<TlsFiles> | null, request: ApiRequest): Promise<ApiResponse> {
  const url = new URL(request.path, baseUrl);
  const payload =
    request.body === undefined
      ? undefined
      : typeof request.body === 'string' || Buffer.isBuffer(request.body)
        ? Buffer.from(request.body)
        : Buffer.from(JSON.stringify(request.body));
  const headers: Record<string, string> = {
    ...(payload !== undefined && request.headers?.['content-type'] === undefined
      ? { 'content-type': 'application/json' }
      : {}),
    ...(payload !== undefined ? { 'content-length': String(payload.length) } : {}),
    ...request.headers,
  };
  return new Promise<ApiResponse>((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: request.method ?? (payload === undefined ? 'GET' : 'POST'),
        headers,
        ...(tls?.ca ? { ca: tls.ca } : {}),
        ...(tls?.cert ? { cert: tls.cert } : {}),
        ...(tls?.key ? { key: tls.key } : {}),
        agent: request.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** A client bound to one identity. */
export function apiClient(baseUrl: string, tls: Partial<TlsFiles> | null) {
  return {
    get: (path: string) => apiRequest(baseUrl, tls, { path }),
    post: (path: string, body?: unknown, headers?: Record<string, string>) =>
      apiRequest(baseUrl, tls, { method: 'POST', path, body, ...(headers ? { headers } : {}) }),
    put: (path: string, body: unknown) => apiRequest(baseUrl, tls, { method: 'PUT', path, body }),
    delete: (path: string) => apiRequest(baseUrl, tls, { method: 'DELETE', path }),
    request: (request: ApiRequest) => apiRequest(baseUrl, tls, request),
  };
}
export type ApiClient = ReturnType<typeof apiClient>;
