// One load generator that speaks both Tallow's and PeerJS server's signaling protocols, so a
// side-by-side run measures the servers and not two different clients.
//
//   node loadgen.mjs rate --protocol tallow|peerjs --url WS [--url2 WS] --pairs N --seconds S
//                         [--warmup S] [--payload BYTES] [--inflight K]
//   node loadgen.mjs idle --protocol tallow|peerjs --url WS --connections N [--hold S]
//   (both: [--connect-timeout S], the bound on opening every connection)
//
// rate: N pairs, each pair alone (its own Tallow room; PeerJS has no rooms, ids are enough).
// The first peer keeps K signals in flight to the second, which echoes each one back; a returned
// echo is one round trip (two relayed messages) and frees the slot for the next send (closed
// loop). With --url2 the second peer of every pair connects there (a pair split across replicas).
// Only round trips completed inside the measured window count; the warm-up before it lets both
// servers (V8's JIT, Python's caches) settle.
//
// idle: opens N connections, prints {"event":"open"}, holds them until stdin closes (or --hold
// seconds pass), then closes them.
//
// Stdout carries one JSON object per line: events ("start"/"stop" of the measured window, so the
// caller can sample the server's CPU time over exactly that window) and a final {"event":"result"}.
// In rate mode a "mark" line on stdin is answered with {"event":"mark","relayed":N}, every signal
// relayed back so far ("stop" carries the same count): a caller whose own step at the start takes
// a while (switching a profiler on) counts from its mark instead of trusting the window.

import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";

const CONNECT_CONCURRENCY = 100; // parallel handshakes: stays under the servers' listen backlogs
const PEERJS_HEARTBEAT_MS = 5_000; // what the PeerJS browser client sends; the server drops silent peers

let connectTimeoutMs = 60_000;

function parseArgs(argv) {
  const [mode, ...rest] = argv;
  const options = {
    mode,
    protocol: "tallow",
    url: "",
    url2: "",
    pairs: 1,
    seconds: 5,
    warmup: 1,
    payload: 300,
    inflight: 1,
    connections: 100,
    hold: 120,
    "connect-timeout": 60,
  };
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i].replace(/^--/, "");
    if (!(key in options) || i + 1 >= rest.length) throw new Error(`bad option ${rest[i]}`);
    const value = rest[i + 1];
    options[key] = typeof options[key] === "number" ? Number(value) : value;
  }
  if (!["rate", "idle"].includes(mode)) throw new Error("mode must be rate or idle");
  if (!["tallow", "peerjs"].includes(options.protocol)) throw new Error("bad --protocol");
  if (!options.url) throw new Error("--url is required");
  connectTimeoutMs = options["connect-timeout"] * 1000;
  return options;
}

const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const token = () => randomBytes(9).toString("base64url");

/** A connected peer: its socket, its server-given (Tallow) or chosen (PeerJS) id. */
class Peer {
  constructor(ws, id) {
    this.ws = ws;
    this.id = id;
    this.onMessage = null;
    this.closedEarly = false;
  }
}

function openSocket(url) {
  // No permessage-deflate: the PeerJS server declines it anyway, so offering it could only
  // load one side with compression work.
  return new WebSocket(url, { perMessageDeflate: false });
}

/** Resolve with the first parsed message that `accept` returns true for. */
function waitFor(ws, accept, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), connectTimeoutMs);
    const onMessage = (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === "error" || message.type === "ERROR" || message.type === "ID-TAKEN") {
        cleanup();
        reject(new Error(`${what}: ${JSON.stringify(message)}`));
      } else if (accept(message)) {
        cleanup();
        resolve(message);
      }
    };
    const onClose = (code) => {
      cleanup();
      reject(new Error(`closed (${code}) waiting for ${what}`));
    };
    const onError = (error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      clearTimeout(timer);
      ws.off("message", onMessage);
      ws.off("close", onClose);
      ws.off("error", onError);
    };
    ws.on("message", onMessage);
    ws.on("close", onClose);
    ws.on("error", onError);
  });
}

/** The two protocols, reduced to: connect, pair up, address a signal, read one. */
const PROTOCOLS = {
  tallow: {
    async connect(url) {
      const ws = openSocket(url);
      const welcome = await waitFor(ws, (m) => m.type === "welcome", "welcome");
      return new Peer(ws, welcome.peer);
    },
    async pair(first, second) {
      const room = "bench-" + token().replace(/[^A-Za-z0-9]/g, "x");
      for (const peer of [first, second]) {
        const joined = waitFor(peer.ws, (m) => m.type === "joined", "joined");
        peer.ws.send(JSON.stringify({ type: "join", room, name: "bench" }));
        await joined;
      }
    },
    signal: (to, data) => JSON.stringify({ type: "signal", to, data }),
    isSignal: (message) => message.type === "signal",
    dataOf: (message) => message.data,
    isError: (message) => message.type === "error",
    heartbeat: null, // the Tallow server pings; ws answers pings by itself
  },
  peerjs: {
    async connect(url) {
      const id = "bench-" + token();
      const target = `${url}?key=peerjs&id=${id}&token=${token()}`;
      const ws = openSocket(target);
      await waitFor(ws, (m) => m.type === "OPEN", "OPEN");
      return new Peer(ws, id);
    },
    async pair() {},
    signal: (dst, payload) => JSON.stringify({ type: "CANDIDATE", dst, payload }),
    isSignal: (message) => message.type === "CANDIDATE",
    dataOf: (message) => message.payload,
    isError: (message) => ["ERROR", "EXPIRE", "LEAVE", "ID-TAKEN"].includes(message.type),
    heartbeat: JSON.stringify({ type: "HEARTBEAT" }),
  },
};

/** Run `count` jobs with at most CONNECT_CONCURRENCY at once; results in order. */
async function bounded(count, job) {
  const results = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      results[index] = await job(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, count) }, worker));
  return results;
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${connectTimeoutMs} ms`)), connectTimeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function startHeartbeats(protocol, peers) {
  if (!protocol.heartbeat) return null;
  return setInterval(() => {
    for (const peer of peers) if (peer.ws.readyState === WebSocket.OPEN) peer.ws.send(protocol.heartbeat);
  }, PEERJS_HEARTBEAT_MS);
}

function percentile(sorted, fraction) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}

const round = (value, digits = 3) => (value === null ? null : Number(value.toFixed(digits)));

async function rate(options) {
  const protocol = PROTOCOLS[options.protocol];
  const connectStarted = performance.now();
  const pairs = await withTimeout(
    bounded(options.pairs, async () => {
      const first = await protocol.connect(options.url);
      const second = await protocol.connect(options.url2 || options.url);
      await protocol.pair(first, second);
      return [first, second];
    }),
    "connecting",
  );
  const connectSeconds = (performance.now() - connectStarted) / 1000;
  const peers = pairs.flat();
  const heartbeats = startHeartbeats(protocol, peers);

  const payload = "x".repeat(options.payload);
  const errors = {};
  const rtts = [];
  let relayed = 0;
  let relayedSoFar = 0; // window or not, for "mark"
  let windowStart = Infinity;
  let windowEnd = Infinity;
  let sending = true;
  const countError = (kind) => (errors[kind] = (errors[kind] || 0) + 1);

  for (const [first, second] of pairs) {
    const send = () => first.ws.send(protocol.signal(second.id, { t: performance.now(), p: payload }));
    second.ws.on("message", (raw) => {
      const message = JSON.parse(raw.toString());
      if (protocol.isSignal(message)) second.ws.send(protocol.signal(first.id, protocol.dataOf(message)));
      else if (protocol.isError(message)) countError(message.code || message.type);
    });
    first.ws.on("message", (raw) => {
      const message = JSON.parse(raw.toString());
      const now = performance.now();
      if (protocol.isSignal(message)) {
        relayedSoFar += 2;
        if (now >= windowStart && now <= windowEnd) {
          rtts.push(now - protocol.dataOf(message).t);
          relayed += 2;
        }
        if (sending) send();
      } else if (protocol.isError(message)) {
        countError(message.code || message.type);
        if (sending) send(); // a refused signal still frees its slot: keep the loop closed
      }
    });
    for (const peer of [first, second]) {
      peer.ws.on("close", (code) => {
        if (sending) countError(`closed-${code}`);
      });
      // A reset socket is a figure to report, not a reason to lose the whole run.
      peer.ws.on("error", (error) => countError(error.code || "socket-error"));
    }
  }

  answerMarks(() => relayedSoFar);

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  for (const [first, second] of pairs) {
    for (let k = 0; k < options.inflight; k++) {
      first.ws.send(protocol.signal(second.id, { t: performance.now(), p: payload }));
    }
  }
  await sleep(options.warmup * 1000);
  windowStart = performance.now();
  const cpuStart = process.cpuUsage();
  emit({ event: "start" });
  await sleep(options.seconds * 1000);
  windowEnd = performance.now();
  const cpu = process.cpuUsage(cpuStart);
  emit({ event: "stop", relayed: relayedSoFar });
  sending = false; // from here only the signal in flight comes back
  await sleep(500); // let the last round trips land before closing
  if (heartbeats) clearInterval(heartbeats);
  for (const peer of peers) peer.ws.terminate();

  const measured = (windowEnd - windowStart) / 1000;
  const sorted = Float64Array.from(rtts).sort();
  emit({
    event: "result",
    protocol: options.protocol,
    pairs: options.pairs,
    seconds: round(measured),
    payload_bytes: options.payload,
    inflight: options.inflight,
    relayed_messages: relayed,
    messages_per_second: round(relayed / measured, 1),
    rtt_ms: {
      p50: round(percentile(sorted, 0.5)),
      p99: round(percentile(sorted, 0.99)),
      max: round(sorted.length ? sorted[sorted.length - 1] : null),
    },
    connect_seconds: round(connectSeconds),
    generator_cpu: round((cpu.user + cpu.system) / 1e6 / measured),
    errors,
  });
}

/** Answer each "mark" line on stdin with the count `relayedSoFar()` gives at that moment. */
function answerMarks(relayedSoFar) {
  let pending = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    const lines = (pending + chunk).split("\n");
    pending = lines.pop();
    for (const line of lines) if (line.trim() === "mark") emit({ event: "mark", relayed: relayedSoFar() });
  });
}

async function idle(options) {
  const protocol = PROTOCOLS[options.protocol];
  const started = performance.now();
  const peers = await withTimeout(bounded(options.connections, () => protocol.connect(options.url)), "connecting");
  const heartbeats = startHeartbeats(protocol, peers);
  let closed = 0;
  for (const peer of peers) {
    peer.ws.on("close", () => closed++);
    peer.ws.on("error", () => {}); // counted by its close
  }
  emit({ event: "open", connections: peers.length, seconds: round((performance.now() - started) / 1000) });
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, options.hold * 1000);
    process.stdin.on("end", () => {
      clearTimeout(timer);
      resolve();
    });
    process.stdin.resume();
  });
  if (heartbeats) clearInterval(heartbeats);
  const droppedByServer = closed;
  for (const peer of peers) peer.ws.terminate();
  emit({ event: "result", protocol: options.protocol, connections: peers.length, dropped: droppedByServer });
}

const options = parseArgs(process.argv.slice(2));
(options.mode === "rate" ? rate(options) : idle(options)).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`loadgen: ${error.stack || error}\n`);
    process.exit(1);
  },
);
