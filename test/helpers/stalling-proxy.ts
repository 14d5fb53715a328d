import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on a loopback port that can hold back the server's replies (a stalled Redis or
 * Postgres, as SIGSTOP or a network stall would): requests still reach the server, which runs them;
 * their replies wait until `resume`.
 */
export class StallingProxy {
  private server!: Server;
  private stalled = false;
  private held: [Socket, Buffer][] = [];
  private sockets = new Set<Socket>();
  port = 0;
  constructor(private readonly target: number) {}
  async start(): Promise<this> {
    this.server = createServer((client) => {
      const upstream = createConnection({ host: '127.0.0.1', port: this.target });
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.on('data', (b: Buffer) => upstream.write(b));
      upstream.on('data', (b: Buffer) => (this.stalled ? this.held.push([client, b]) : client.write(b)));
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }
  stall(): void {
    this.stalled = true;
  }
  resume(): void {
    this.stalled = false;
    for (const [s, b] of this.held.splice(0)) s.write(b);
  }
  async close(): Promise<void> {
    this.resume();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
