/** The part of autocannon 8.0.0 (no bundled types) that scripts/bench-rest.ts uses. */
declare module 'autocannon' {
  export interface Histogram {
    average: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
    p50: number;
    p90: number;
    p97_5: number;
    p99: number;
    p99_9?: number;
    total?: number;
  }
  export interface Result {
    requests: Histogram & { total: number; sent: number };
    latency: Histogram;
    throughput: Histogram;
    errors: number;
    timeouts: number;
    non2xx: number;
    duration: number;
    '2xx': number;
  }
  export interface Options {
    url: string;
    connections?: number;
    duration?: number;
    pipelining?: number;
    workers?: number;
    timeout?: number;
    tlsOptions?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
    requests?: { path?: string; method?: string }[];
  }
  function autocannon(options: Options): Promise<Result>;
  export default autocannon;
}
