// Artillery processor for bench/run.py: the guest protocol's round trips, written
// for Artillery's ws engine (its own steps cannot make an HTTP call before the
// WebSocket, nor wait for a frame of a given type and id).
//
// $BENCH_HOSTS: comma-separated gateway base URLs (guests take them round-robin);
// $BENCH_MODE: idle | churn | chat; $BENCH_KEEPALIVE_S; $BENCH_CHAT_INTERVAL (MIN-MAX s);
// $BENCH_DURATION_S: guests stop their loops after this long.
'use strict';
const http = require('http');

const HOSTS = (process.env.BENCH_HOSTS || '').split(',').filter(Boolean);
const MODE = process.env.BENCH_MODE || 'chat';
const KEEPALIVE_MS = 1000 * Number(process.env.BENCH_KEEPALIVE_S || 20);
const [LO, HI] = (process.env.BENCH_CHAT_INTERVAL || '0').split('-').map(Number);
const END_AT = Date.now() + 1000 * Number(process.env.BENCH_DURATION_S || 60);
let next = 0;

function token(wsArgs, context, done) {
  const base = new URL(HOSTS[next++ % HOSTS.length]);
  const body = JSON.stringify({ displayName: 'Artillery Guest' });
  const req = http.request({ host: base.hostname, port: base.port, path: '/api/v2/guests', method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
    let data = '';
    res.on('data', (chunk) => { data += chunk; });
    res.on('end', () => {
      if (res.statusCode !== 201) return done(new Error(`token ${res.statusCode}`));
      context.vars.grant = JSON.parse(data);
      wsArgs.target = `ws://${base.host}/api/v2/guest/websocket`;
      done();
    });
  });
  req.on('error', done);
  req.end(body);
}

// The next frame of `type` whose id is `id` (any id when null), or an error after 15 s.
function answer(ws, type, id) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { ws.removeListener('message', onMessage); reject(new Error(`no ${type}`)); },
      15000);
    function onMessage(raw) {
      const frame = JSON.parse(raw.toString());
      if (frame.type === type && (id === null || frame.id === id)) {
        clearTimeout(timer);
        ws.removeListener('message', onMessage);
        resolve(frame);
      }
    }
    ws.on('message', onMessage);
  });
}

async function auth(context, events) {
  const { guestId, token: tok } = context.vars.grant;
  const t0 = process.hrtime.bigint();
  const waiting = answer(context.ws, 'auth_ok', null);
  context.ws.send(JSON.stringify({ type: 'auth', guestId, token: tok }));
  await waiting;
  events.emit('histogram', 'guest.auth', Number(process.hrtime.bigint() - t0) / 1e6);
  events.emit('counter', 'guest.authenticated', 1);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function guest(context, events) {
  const ws = context.ws;
  let n = 0;
  if (MODE === 'idle') {
    while (Date.now() < END_AT) {
      await sleep(KEEPALIVE_MS);
      const id = `p-${++n}`;
      const waiting = answer(ws, 'pong', id);
      ws.send(JSON.stringify({ type: 'ping', id }));
      await waiting;
      events.emit('counter', 'guest.pings', 1);
    }
  } else if (MODE === 'chat') {
    let due = Date.now();
    while (Date.now() < END_AT) {
      due += 1000 * (LO + ((HI || LO) - LO) * Math.random());  // one message every uniform(LO, HI) s
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      const id = `c-${++n}`;
      const waiting = answer(ws, 'ack', id);
      ws.send(JSON.stringify({ type: 'message', id, text: 'hello from artillery' }));
      await waiting;
      events.emit('counter', 'guest.messages', 1);
    }
  }
  // churn: nothing more; the engine closes the WebSocket when the flow ends
}

module.exports = { token, auth, guest };
