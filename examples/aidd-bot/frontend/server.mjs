// AIDD Bot dashboard (stand-in for a Next.js app): renders the api's /stats on the server.
// Only Node built-ins, so it runs on Node 18 (Debian) and 20 without npm install.
import http from 'node:http';

const API_URL = (process.env.API_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
const PORT = Number(process.env.PORT || 3000);
const API_TIMEOUT_MS = 3000; // a stuck api must not hang the page

const escapeHtml = (value) =>
  String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function page(body) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AIDD Bot</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  table { border-collapse: collapse; } td, th { padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
  .error { color: #a00; }
</style>
</head>
<body>
<h1>AIDD Bot</h1>
${body}
</body>
</html>
`;
}

// During a zero-downtime switch the name "api" resolves to the old and the new container, and the old one
// stops: a request refused or cut before any answer is sent again (GET is safe to repeat), up to 3 times.
const RETRIED = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

async function fetchApi(url, attempts = 3) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fetch(url, { signal: AbortSignal.timeout(API_TIMEOUT_MS) });
    } catch (err) {
      if (attempt >= attempts || !RETRIED.has(err?.cause?.code)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function fetchStats() {
  const response = await fetchApi(`${API_URL}/stats`);
  if (!response.ok) {
    const text = await response.text().catch(() => '');
    throw new Error(`api answered HTTP ${response.status} ${text.slice(0, 200)}`);
  }
  return response.json();
}

function renderStats(stats) {
  const rows = [
    ['Users', stats.users],
    ['Messages', stats.messages],
    ['Messages (last 24 h)', stats.messages_24h],
    ['Messages handled by the bot', stats.bot_handled],
    ['Bot last seen', stats.bot_last_seen ?? 'never'],
  ];
  return `<table id="stats">\n${rows
    .map(([label, value]) => `<tr><th>${escapeHtml(label)}</th><td>${escapeHtml(value)}</td></tr>`)
    .join('\n')}\n</table>`;
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
  res.end(body);
}

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
  if (path === '/health') return send(res, 200, 'application/json', JSON.stringify({ status: 'ok' }));
  if (path !== '/') return send(res, 404, 'text/plain', 'not found\n');
  try {
    const stats = await fetchStats();
    send(res, 200, 'text/html; charset=utf-8', page(renderStats(stats)));
  } catch (err) {
    const reason = err?.name === 'TimeoutError' ? `no answer within ${API_TIMEOUT_MS} ms` : err?.cause?.message || err?.message;
    console.error(`frontend: GET ${API_URL}/stats failed: ${reason}`);
    send(res, 502, 'text/html; charset=utf-8',
      page(`<p class="error">The api is not available right now (${escapeHtml(reason)}). Try again shortly.</p>`));
  }
});

server.listen(PORT, '0.0.0.0', () => console.log(`frontend: listening on :${PORT}, api at ${API_URL}`));

// Close on SIGTERM/SIGINT so `docker stop` is quick; PID 1 in a container gets no default handlers.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    console.log(`frontend: ${signal}, closing`);
    server.close(() => process.exit(0));
    server.closeIdleConnections?.(); // Node >= 18.2: idle keep-alive sockets go now, requests in flight finish
    setTimeout(() => process.exit(0), 5000).unref();
  });
}
