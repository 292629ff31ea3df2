import { Server } from '../../src/server/server.js';
import type { ServerOptions } from '../../src/server/options.js';

export async function startServer<T = unknown>(options: ServerOptions<T>): Promise<{ server: Server<T>; port: number; url: string }> {
  const server = new Server<T>(options);
  const addr = await server.listen(0, '127.0.0.1');
  return { server, port: addr.port, url: `ws://127.0.0.1:${addr.port}` };
}

export function echoHandlers(): ServerOptions['handlers'] {
  return {
    message(conn, data, isBinary) {
      conn.send(data, isBinary);
    },
  };
}
