// A small app written for ws, on a plain node:http server: a broadcast chat with ws's
// documented heartbeat. The compatibility suite runs it as it is, and with the import of ws
// changed to murmur-ws/ws.
import { createServer } from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';

const server = createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(`clients: ${wss.clients.size}`);
});
const wss = new WebSocketServer({ server, path: '/chat' });

function heartbeat() {
  this.isAlive = true;
}

wss.on('connection', function connection(ws, req) {
  ws.isAlive = true;
  ws.on('error', console.error);
  ws.on('pong', heartbeat);
  ws.on('message', function message(data, isBinary) {
    wss.clients.forEach(function each(client) {
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    });
  });
  ws.on('close', (code, reason) => {
    wss.clients.forEach((client) => client.send(`left ${code} ${reason}`));
  });
  ws.send(`welcome ${new URL(req.url, 'http://x').searchParams.get('name')} from ${req.socket.remoteAddress}`);
});

const interval = setInterval(function ping() {
  wss.clients.forEach(function each(ws) {
    if (ws.isAlive === false) return ws.terminate();
    ws.isAlive = false;
    ws.ping();
  });
}, 30000);
wss.on('close', () => clearInterval(interval));

server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
