'use strict';
// A plexus worker in plain Node.js (only the `net` module): it serves the object `demo` with the
// Midway socket IPC article's `add` and `time` methods, speaking NDJSON op lines on the bus socket.
//
//   node worker.js BUS_SOCKET [OBJECT]
const net = require('net');
const { StringDecoder } = require('string_decoder');

const socketPath = process.argv[2];
const object = process.argv[3] || 'demo';
if (!socketPath) {
  console.error('usage: node worker.js BUS_SOCKET [OBJECT]');
  process.exit(64);
}

const service = {
  add(...args) {
    return args.reduce((a, b) => a + b);
  },
  time(...args) {
    return new Promise((resolve) => {
      setTimeout(() => resolve(args.reduce((a, b) => a * b)), 1000);
    });
  },
};

const socket = net.connect(socketPath);
const send = (message) => socket.write(JSON.stringify(message) + '\n');

// One JSON object per line, as in the article's parser.
const decoder = new StringDecoder('utf8');
let pending = '';
socket.on('data', (chunk) => {
  pending += decoder.write(chunk);
  let newline;
  while ((newline = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, newline);
    pending = pending.slice(newline + 1);
    if (line.trim()) handle(JSON.parse(line));
  }
});

async function handle(message) {
  if (message.op === 'reply' && message.id === 'register') {
    console.log(`serving ${object}`);
  } else if (message.op === 'error' && message.id === 'register') {
    console.error(`cannot register ${object}: ${message.error.name}: ${message.error.message}`);
    process.exit(1);
  } else if (message.op === 'call') {
    const method = service[message.method];
    if (!method) {
      send({
        op: 'error',
        id: message.id,
        error: { code: 'no_such_method', message: `${object} has no method '${message.method}'` },
      });
      return;
    }
    try {
      const args = Array.isArray(message.params) ? message.params : [];
      send({ op: 'reply', id: message.id, result: await method(...args) });
    } catch (err) {
      send({ op: 'error', id: message.id, error: { code: 'internal', message: err.message } });
    }
  }
}

socket.on('connect', () => send({ op: 'register', id: 'register', name: object }));
socket.on('error', (err) => {
  console.error(`bus socket ${socketPath}: ${err.message}`);
  process.exit(1);
});
socket.on('close', () => process.exit(0));
