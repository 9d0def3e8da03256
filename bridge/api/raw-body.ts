/**
 * The request body as received, kept by the API's JSON parser (./server.ts): the telemetry
 * fallback hands these exact bytes to the MQTT ingest, and size limits count them.
 */
import type { FastifyRequest } from 'fastify';

const rawBodies = new WeakMap<FastifyRequest, Buffer>();

export function keepRawBody(request: FastifyRequest, body: Buffer): void {
  rawBodies.set(request, body);
}

export function rawBodyOf(request: FastifyRequest): Buffer {
  return rawBodies.get(request) ?? Buffer.alloc(0);
}
