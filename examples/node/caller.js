'use strict';
// A plexus caller in plain Node.js (only the `net` module): it waits for the object `demo`, then
// calls `add` and `time` with JSON-RPC 2.0 lines on the bus socket, like the Midway socket IPC article's demo.
//
//   node caller.js BUS_SOCKET [OBJECT]
const net = require('net');
const { StringDecoder } = require('string_decoder');

const socketPath = process.argv[2];
const object = process.argv[3] || 'demo';
if (!socketPath) {
  console.error('usage: node caller.js BUS_SOCKET [OBJECT]');
  process.exit(64);
}

const socket = net.connect(socketPath);
let nextId = 0;
const waiting = new Map();

// Sends a request (a JSON-RPC call or an op line) and resolves with its result.
function request(message) {
  return new Promise((resolve, reject) => {
    const id = ++nextId;
    waiting.set(id, { resolve, reject });
    socket.write(JSON.stringify({ ...message, id }) + '\n');
  });
}

const call = (method, params) => request({ jsonrpc: '2.0', method: `${object}.${method}`, params });

const decoder = new StringDecoder('utf8');
let pending = '';
socket.on('data', (chunk) => {
  pending += decoder.write(chunk);
  let newline;
  while ((newline = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, newline);
    pending = pending.slice(newline + 1);
    if (!line.trim()) continue;
    const message = JSON.parse(line);
    const open = waiting.get(message.id);
    if (!open) continue;
    waiting.delete(message.id);
    if (message.error) {
      open.reject(new Error(`error ${message.error.code}: ${message.error.message}`));
    } else {
      open.resolve(message.result);
    }
  }
});

async function main() {
  await request({ op: 'wait_for', names: [object], timeout_ms: 10000 });
  const service = {
    add: (...args) => call('add', args),
    time: (...args) => call('time', args),
  };
  await Promise.all([
    service.add(1, 2, 3, 4, 5).then((result) => console.log(`1+2+3+4+5 = ${result}`)),
    service.time(1, 2, 3, 4, 5).then((result) => console.log(`1*2*3*4*5 = ${result}`)),
  ]);
  socket.end();
}

socket.on('error', (err) => {
  console.error(`bus socket ${socketPath}: ${err.message}`);
  process.exit(1);
});
main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
