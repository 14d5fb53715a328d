// Minimal types for pg-cursor (the package ships none); only what the benchmark uses.
declare module 'pg-cursor' {
  import type { Connection, Submittable } from 'pg';

  export default class Cursor<R = Record<string, unknown>> implements Submittable {
    constructor(text: string, values?: unknown[], config?: { rowMode?: 'array' });
    submit: (connection: Connection) => void;
    read(rows: number): Promise<R[]>;
    close(): Promise<void>;
  }
}
