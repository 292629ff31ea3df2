/**
 * The demo chat served at / by `murmur serve`: pick a name, join a room, see who is online,
 * chat. It uses only the browser client (/murmur-client.js). Its log and the client's stream
 * positions live in sessionStorage, so a reload shows the conversation again and recovers
 * what was said meanwhile from the room's history.
 *
 * Kept as strings (no build step for the page); the script avoids backticks and "${" so it
 * can sit in a template literal unchanged. Every text from the network goes through
 * textContent, never innerHTML.
 */

export const DEMO_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>murmur chat</title>
<style>
  /* Nothing may widen the page: long words wrap anywhere, grid and flex children may shrink
     below their content (min-width: 0), and narrow screens stack the member list above the chat. */
  *, *::before, *::after { box-sizing: border-box; }
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f6f6f4; color: #222; overflow-wrap: anywhere; }
  header { padding: 10px 16px; background: #223; color: #eee; display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  #status { margin-left: auto; font-size: 13px; opacity: .85; }
  #join, #chat { padding: 16px; }
  #chat { display: grid; grid-template-columns: 200px minmax(0, 1fr); gap: 16px; }
  #chat[hidden], #join[hidden] { display: none; }
  aside, section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px; min-width: 0; }
  aside h2 { font-size: 14px; margin: 0 0 6px; }
  #members { list-style: none; padding: 0; margin: 0; }
  #members li::before { content: "\\25CF  "; color: #2a2; }
  #log { list-style: none; padding: 0; margin: 0 0 10px; height: 55vh; overflow-y: auto; overflow-x: hidden; }
  #log li { padding: 2px 0; overflow-wrap: anywhere; word-break: break-word; }
  #log li .from { font-weight: 600; margin-right: 6px; }
  #log li.note { color: #777; font-style: italic; }
  form { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
  #join label { display: flex; gap: 6px; align-items: center; flex: 1 1 12em; min-width: 0; }
  #join input { flex: 1; }
  input { padding: 6px; font: inherit; min-width: 0; }
  button { font: inherit; padding: 6px 12px; }
  #send { flex-wrap: nowrap; }
  #text { flex: 1; }
  @media (max-width: 600px) {
    #join, #chat { padding: 8px; }
    #chat { grid-template-columns: minmax(0, 1fr); gap: 8px; }
    #members li { display: inline; margin-right: 10px; }
    #log { height: 50vh; }
  }
</style>
</head>
<body>
<header><h1>murmur chat</h1><span id="who"></span><span id="status">not connected</span></header>
<form id="join">
  <label>Name <input id="name" required maxlength="40" autocomplete="nickname"></label>
  <label>Room <input id="room" required maxlength="60" value="lobby"></label>
  <button id="join-button" type="submit">Join</button>
</form>
<main id="chat" hidden>
  <aside><h2>Online in <span id="room-name"></span></h2><ul id="members"></ul></aside>
  <section>
    <ol id="log"></ol>
    <form id="send"><input id="text" maxlength="2000" autocomplete="off" placeholder="Say something"><button id="send-button" type="submit">Send</button></form>
  </section>
</main>
<script type="module" src="/demo.js"></script>
</body>
</html>
`;

export const DEMO_JS = String.raw`import { MurmurClient } from '/murmur-client.js';

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;
const MAX_LOG = 200;
let client = null;
let topic = null;
let name = '';
let log = [];
const seen = new Set();

function logKey() { return 'demo:log:' + topic; }

function renderEntry(e) {
  const li = document.createElement('li');
  if (e.note) {
    li.className = 'note';
    li.textContent = e.note;
  } else {
    const from = document.createElement('span');
    from.className = 'from';
    from.textContent = e.name + ':';
    li.append(from, document.createTextNode(e.text));
    if (e.offset !== undefined) li.dataset.offset = String(e.offset);
  }
  const box = $('log');
  box.append(li);
  box.scrollTop = box.scrollHeight;
}

function addMessage(m) {
  if (m.offset !== undefined) {
    const key = m.epoch + ':' + m.offset;
    if (seen.has(key)) return;
    seen.add(key);
  }
  const d = m.data && typeof m.data === 'object' && !m.binary ? m.data : {};
  const e = {
    name: typeof d.name === 'string' ? d.name : m.from,
    text: typeof d.text === 'string' ? d.text : m.binary ? '(' + m.data.length + ' bytes)' : JSON.stringify(m.data),
    epoch: m.epoch,
    offset: m.offset,
  };
  log.push(e);
  if (log.length > MAX_LOG) log.shift();
  store.setItem(logKey(), JSON.stringify(log));
  renderEntry(e);
}

function note(text) {
  renderEntry({ note: text });
}

function renderMembers(members) {
  const ul = $('members');
  ul.replaceChildren();
  const me = client && client.welcome ? client.welcome.conn : null;
  for (const m of members) {
    const li = document.createElement('li');
    const n = m.meta && typeof m.meta.name === 'string' ? m.meta.name : m.user;
    li.textContent = m.conn === me ? n + ' (you)' : n;
    li.dataset.name = n;
    ul.append(li);
  }
}

function start(who, room) {
  name = who;
  topic = 'room:' + room;
  store.setItem('demo:session', JSON.stringify({ name: who, room }));
  $('join').hidden = true;
  $('chat').hidden = false;
  $('room-name').textContent = room;
  $('who').textContent = 'as ' + who;
  try { log = JSON.parse(store.getItem(logKey()) || '[]'); } catch { log = []; }
  for (const e of log) {
    if (e.offset !== undefined) seen.add(e.epoch + ':' + e.offset);
    renderEntry(e);
  }
  client = new MurmurClient();
  client.on('state', (s) => { $('status').textContent = s; });
  client.on('close', (ev) => {
    if (ev.reconnect) $('status').textContent = 'reconnecting in ' + Math.round(ev.delayMs / 100) / 10 + ' s (' + ev.code + (ev.reason ? ': ' + ev.reason : '') + ')';
  });
  client.on('message', (m) => { if (m.topic === topic) addMessage(m); });
  client.on('presence', (ev) => { if (ev.topic === topic) renderMembers(ev.members); });
  client.on('error', (err) => note('error: ' + err.code + ' ' + err.message));
  client.on('resync', async () => {
    // The lines on screen came before a gap: they go, the latest messages replace them.
    $('log').replaceChildren();
    note('Some messages could not be recovered; showing the latest instead.');
    seen.clear();
    log = [];
    store.removeItem(logKey());
    const h = await client.history(topic, { limit: 50 });
    for (const m of h.messages) addMessage(m);
  });
  client.subscribe(topic, { rewind: 50, presence: true }).catch((err) => note('subscribe failed: ' + err.message));
  client.join(topic, { name: who }).catch((err) => note('join failed: ' + err.message));
}

$('join').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const who = $('name').value.trim();
  const room = $('room').value.trim().replace(/[^A-Za-z0-9_.-]/g, '-');
  if (who && room) start(who, room);
});

$('send').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('text');
  const text = input.value.trim();
  if (!text || !client) return;
  input.value = '';
  client.publish(topic, { name, text }).catch((err) => note('not sent: ' + err.code + ' ' + err.message));
});

try {
  const saved = JSON.parse(store.getItem('demo:session') || 'null');
  if (saved && saved.name && saved.room) start(saved.name, saved.room);
} catch {
  // a fresh tab
}
`;
