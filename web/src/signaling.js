// WebSocket client for /signaling (PROTOCOL.md, version 1) that survives dropped connections.
//
// After an unexpected close it reconnects with ?resume=<token>, backing off up to 10 s. The
// server gives the same peer id back within its grace period, so the room and every peer
// connection stay as they were; messages sent while offline wait in a bounded queue. If the
// grace period ran out, the server hands out a new id and we report 'expired' so the app rejoins.
const MAX_QUEUED = 200;
const MAX_BACKOFF_MS = 10_000;

/**
 * A JSON object from the network (the server, or a peer through the encrypted channel). Its
 * fields are untrusted and checked where they are read, so they are typed `any` here, once.
 * @typedef {Record<string, any>} WireMessage
 */
/** @typedef {{resolve: (reply: WireMessage) => void, reject: (error: Error) => void}} PendingRequest */

export class Signaling extends EventTarget {
  /** @param {string} url */
  constructor(url) {
    super();
    this.url = url;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {string | null} */
    this.peerId = null;
    this.lastSeen = 0;
    /** @type {string | null} */
    this.resumeToken = null;
    this.heartbeat = 20;
    this.state = 'offline'; // connecting | online | reconnecting | offline
    /** Messages (JSON text) waiting for the connection. @type {string[]} */
    this.queue = [];
    /** Requests waiting for their reply, by id. @type {Map<number, PendingRequest>} */
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.stopped = false;
  }

  /** @returns {Promise<void>} resolves at the first welcome; rejects if the server is unreachable */
  connect() {
    this.stopped = false;
    this.open();
    return new Promise((resolve, reject) => {
      const ok = () => { cleanup(); resolve(); };
      const bad = () => { cleanup(); reject(new Error('Cannot reach the Tallow server. Check your connection and reload the page.')); };
      const cleanup = () => { this.removeEventListener('welcome', ok); this.removeEventListener('unreachable', bad); };
      this.addEventListener('welcome', ok);
      this.addEventListener('unreachable', bad);
    });
  }

  open() {
    const url = new URL(this.url);
    if (this.resumeToken) url.searchParams.set('resume', this.resumeToken);
    this.setState(this.peerId ? 'reconnecting' : 'connecting');
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.addEventListener('message', (event) => this.onMessage(event.data));
    ws.addEventListener('close', (event) => this.onClose(ws, event));
  }

  /** @param {string} text */
  onMessage(text) {
    /** @type {WireMessage} */
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    this.lastSeen = Date.now();
    if (msg.type === 'welcome') return this.onWelcome(msg);
    if (msg.re !== undefined && this.pending.has(msg.re)) {
      const { resolve, reject } = /** @type {PendingRequest} */ (this.pending.get(msg.re));
      this.pending.delete(msg.re);
      if (msg.type === 'error') reject(Object.assign(new Error(msg.message), { code: msg.code }));
      else resolve(msg);
      return;
    }
    this.dispatchEvent(new CustomEvent('message', { detail: msg }));
  }

  /** @param {WireMessage} msg */
  onWelcome(msg) {
    const previous = this.peerId;
    this.peerId = msg.peer;
    this.resumeToken = msg.resume;
    this.heartbeat = msg.heartbeat || this.heartbeat;
    this.limits = msg.limits;
    this.attempt = 0;
    this.setState('online');
    this.startKeepalive();
    if (previous && previous !== msg.peer) {
      this.queue = []; // addressed from an identity that is gone
      this.dispatchEvent(new CustomEvent('expired', { detail: { previous } }));
    } else if (previous) {
      this.dispatchEvent(new Event('resumed'));
    }
    for (const queued of this.queue.splice(0)) this.ws?.send(queued);
    this.dispatchEvent(new Event('welcome'));
  }

  /**
   * @param {WebSocket} ws
   * @param {CloseEvent} event
   */
  onClose(ws, event) {
    if (ws !== this.ws) return;
    clearInterval(this.keepalive);
    for (const { reject } of this.pending.values()) reject(new Error('The connection to the server closed.'));
    this.pending.clear();
    if (this.stopped) return this.setState('offline');
    if (!this.peerId && this.attempt >= 2) this.dispatchEvent(new Event('unreachable'));
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (event.code === 1001 ? 0 : 1);
    this.attempt += 1;
    this.setState(this.peerId ? 'reconnecting' : 'connecting');
    this.retry = setTimeout(() => this.open(), delay);
  }

  /** Client pings detect a dead connection that the browser would not notice on its own. */
  startKeepalive() {
    clearInterval(this.keepalive);
    this.lastSeen = Date.now();
    const period = this.heartbeat * 1000;
    this.keepalive = setInterval(() => {
      if (Date.now() - this.lastSeen > 2 * period) this.ws?.close(4000, 'no answer');
      else this.send({ type: 'ping' });
    }, period);
  }

  /** Send (or queue while reconnecting) a message. @param {{type: string} & Record<string, unknown>} msg */
  send(msg) {
    const text = JSON.stringify(msg);
    if (this.ws?.readyState === WebSocket.OPEN && this.state === 'online') this.ws.send(text);
    else if (this.queue.length < MAX_QUEUED) this.queue.push(text);
  }

  /**
   * Send a message and wait for the server's reply to it (or its error).
   * @param {{type: string} & Record<string, unknown>} msg
   * @returns {Promise<WireMessage>}
   */
  request(msg) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send({ ...msg, id });
    });
  }

  /** @param {string} state */
  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new Event('state'));
  }

  close() {
    this.stopped = true;
    clearTimeout(this.retry);
    clearInterval(this.keepalive);
    this.ws?.close(1000);
  }
}
