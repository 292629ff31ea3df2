// A small Express app written for ws: routes beside a WebSocket endpoint taken with
// noServer + handleUpgrade, a token check in the upgrade, and a JSON protocol. The
// compatibility suite runs it as it is, and with the import of ws changed to murmur-ws/ws.
import express from 'express';
import { WebSocketServer } from 'ws';

const app = express();
const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

app.get('/health', (req, res) => res.json({ ok: true, clients: wss.clients.size }));

wss.on('connection', (ws, request, user) => {
  ws.on('error', console.error);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return ws.send(data, { binary: true });
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return ws.close(1003, 'json please');
    }
    if (msg.type === 'echo') ws.send(JSON.stringify({ type: 'echo', user, text: msg.text }));
    else if (msg.type === 'count') ws.send(JSON.stringify({ type: 'count', clients: wss.clients.size }));
    else if (msg.type === 'bye') ws.close(4000, 'bye ' + user);
  });
});

const server = app.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));

server.on('upgrade', (request, socket, head) => {
  const url = new URL(request.url, 'http://x');
  const user = url.searchParams.get('user');
  if (url.pathname !== '/ws' || url.searchParams.get('token') !== 'secret') {
    socket.write('HTTP/1.1 401 Unauthorized\r\n\r\n');
    socket.destroy();
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request, user));
});
