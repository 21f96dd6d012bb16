// The app: one room, the people in it, and the files going between them.
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { x25519Supported } from './handshake.js';
import { Peer } from './peer.js';
import { qrSvg } from './qr.js';
import { registerDownloads } from './sink.js';
import { Signaling } from './signaling.js';
import { MAX_FILES_PER_OFFER, TEXT_MAX_BYTES, abandonInterrupted } from './transfer.js';
import { errorText } from './format.js';
import { h, renderPeer, transferRow } from './view.js';
import { droppedItems, fileItems } from './pick.js';

/**
 * The page's element `id`, which index.html has, as a `type`.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{new (): T, name: string}} type
 * @returns {T}
 */
function element(id, type) {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`index.html has no ${type.name} #${id}`);
  return el;
}
/** @param {string} id */
const $ = (id) => element(id, HTMLElement);
/** @typedef {import('./transfer.js').Item} Item */
/** @typedef {import('./transfer.js').Transfer} Transfer */
/** @typedef {import('./signaling.js').WireMessage} WireMessage */

const params = new URLSearchParams(location.search);
/** ?relay=1: only TURN relay candidates, which also hides each side's IP address from the other. */
const relayOnly = params.get('relay') === '1';
/** Installed only by a test harness (before this script runs); receives handshake secrets. */
const hook = window.__tallowTestHook ?? null;
const NAME_KEY = 'tallow.name';
/** @type {Record<string, string>} */
const ROOM_ERRORS = {
  'bad-room': 'That room code is not valid: use letters, digits, - and _ only.',
  'room-full': 'That room is full. Ask the others to make room, or create a new room.',
  'already-in-room': 'You are already in a room. Leave it first.',
  'rate-limited': 'Too many requests at once. Wait a few seconds and try again.',
  draining: 'The server is restarting. Wait a moment; the page reconnects by itself.',
};

/** The server connection; main() connects it, once this browser proved able to run Tallow. */
const signaling = new Signaling(signalingUrl());
const app = {
  /** @type {string | null} */
  room: null,
  /** @type {Map<string, Peer>} */
  peers: new Map(),
  /** Per peer id: transfers cut off with that peer, waiting for the next session (tid -> Transfer). */
  /** @type {Map<string, Map<string, import('./transfer.js').Transfer>>} */
  interrupted: new Map(),
  /** @type {import('./peer.js').IceSettings} */
  ice: { iceServers: [], relayOnly, ttl: 0 },
};

function signalingUrl() {
  const url = new URL('/signaling', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/** @param {string} text */
function announce(text) {
  $('status').textContent = text;
}

/** @param {string} text an error in plain words, or '' to clear it */
function showAlert(text) {
  const box = $('alert');
  box.hidden = !text;
  box.textContent = text || '';
}

function myName() {
  return element('name', HTMLInputElement).value.trim().slice(0, 64) || 'Someone';
}

function initName() {
  const input = element('name', HTMLInputElement);
  let name = localStorage.getItem(NAME_KEY);
  if (!name) {
    const pick = () => wordlist[crypto.getRandomValues(new Uint16Array(1))[0] % wordlist.length];
    name = `${pick()} ${pick()}`.replace(/\b\w/g, (c) => c.toUpperCase());
    localStorage.setItem(NAME_KEY, name);
  }
  input.value = name;
  input.addEventListener('change', () => {
    localStorage.setItem(NAME_KEY, myName());
    for (const peer of app.peers.values()) peer.sendName(myName());
  });
}

async function refreshIce() {
  try {
    const response = await fetch('/api/ice-servers', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    app.ice.iceServers = Array.isArray(body.iceServers) ? body.iceServers : [];
    app.ice.ttl = Number(body.ttl) || 0;
  } catch (error) {
    showAlert(`Could not load the connection settings from the server (${errorText(error)}). Direct connections may still work; reload the page if people cannot connect.`);
  }
  // TURN credentials expire: fetch fresh ones at half their lifetime.
  if (app.ice.ttl > 0) setTimeout(refreshIce, (app.ice.ttl * 1000) / 2);
}

// ---- room -------------------------------------------------------------------------------

/**
 * The server's error `code` in plain words, or '' for a code this page does not know.
 * @param {unknown} code
 */
function roomErrorText(code) {
  return typeof code === 'string' && Object.hasOwn(ROOM_ERRORS, code) ? ROOM_ERRORS[code] : '';
}

/**
 * A refused room request in plain words: the server's error code explained, or `fallback`.
 * @param {unknown} error
 * @param {string} fallback
 */
function roomProblem(error, fallback) {
  const code = error instanceof Error && 'code' in error ? String(error.code) : '';
  return roomErrorText(code) || `${fallback}: ${errorText(error)}`;
}

async function createRoom() {
  showAlert('');
  try {
    const { room } = await signaling.request({ type: 'create' });
    await joinRoom(room);
  } catch (error) {
    showAlert(roomProblem(error, 'Could not create a room'));
  }
}

/** @param {string} code */
async function joinRoom(code) {
  showAlert('');
  let reply;
  try {
    // No name: names go end to end, inside the encrypted channel, never to the server.
    reply = await signaling.request({ type: 'join', room: code });
  } catch (error) {
    showAlert(roomProblem(error, `Could not join room ${code}`));
    return false;
  }
  const room = String(reply.room);
  app.room = room;
  history.replaceState(null, '', `${location.pathname}${location.search}#room=${encodeURIComponent(room)}`);
  showRoom();
  for (const p of reply.peers) addPeer(p.peer, true);
  announce(`You are in room ${room}.`);
  return true;
}

async function leaveRoom() {
  try {
    await signaling.request({ type: 'leave' });
  } catch {
    // Leaving locally is what matters; the server drops us after its grace period anyway.
  }
  for (const peer of app.peers.values()) peer.close('You left the room.');
  for (const interrupted of app.interrupted.values()) abandonInterrupted(interrupted, 'You left the room.');
  app.interrupted.clear();
  app.peers.clear();
  $('peers').replaceChildren();
  app.room = null;
  history.replaceState(null, '', `${location.pathname}${location.search}`);
  showRoom();
  announce('You left the room.');
}

function showRoom() {
  const room = app.room;
  $('start').hidden = room !== null;
  $('room').hidden = room === null;
  $('people').hidden = room === null;
  if (room === null) return;
  const link = `${location.origin}/#room=${encodeURIComponent(room)}`;
  $('room-code').textContent = room;
  element('room-link', HTMLAnchorElement).href = link;
  $('room-link').textContent = link;
  $('qr').replaceChildren(qrSvg(link, `QR code of the link to room ${room}`));
  updateNoPeers();
}

function updateNoPeers() {
  $('no-peers').hidden = [...app.peers.values()].some((p) => p.state !== 'closed');
}

// ---- peers ------------------------------------------------------------------------------

/**
 * @param {string} id
 * @param {boolean} initiator
 */
function addPeer(id, initiator) {
  const replaced = app.peers.get(id);
  replaced?.lose('A new connection replaces this one.'); // its running transfers wait for the new one
  replaced?.close('Reconnected.');
  const old = $('peers').querySelector(`li[data-peer="${CSS.escape(id)}"]`);
  // Peers come from the room, which is joined only once the server welcomed us with an id.
  const selfId = signaling.peerId;
  if (selfId === null) throw new Error('not connected to the server');
  let interrupted = app.interrupted.get(id);
  if (!interrupted) app.interrupted.set(id, (interrupted = new Map()));
  const peer = new Peer({
    id,
    name: 'Someone', // until their name arrives over the encrypted channel
    initiator,
    selfId,
    selfName: myName,
    signal: (data) => signaling.send({ type: 'signal', to: id, data }),
    ice: app.ice,
    onTransfer: showTransfer,
    interrupted,
    hook,
  });
  // The channel closed but they may still be here: the initiator starts a new session (new keys,
  // new words); the responder's peer is replaced when that session's first signal arrives.
  peer.addEventListener('lost', () => {
    if (peer.initiator && app.peers.get(id) === peer) addPeer(id, true);
  });
  const li = h('li', { class: 'peer' });
  li.addEventListener('dragover', (event) => event.preventDefault());
  li.addEventListener('drop', async (event) => {
    event.preventDefault();
    event.stopPropagation();
    for (const [kind, items] of await droppedItems(event.dataTransfer)) sendToPeer(peer, kind, items);
  });
  const actions = {
    files: (/** @type {File[]} */ files) => sendToPeer(peer, 'files', fileItems(files)),
    verify: () => peer.verify(),
    dropPending: () => peer.dropPendingSends(),
  };
  const render = () => {
    renderPeer(li, peer, actions);
    updateNoPeers();
  };
  peer.addEventListener('change', render);
  render();
  if (old) old.replaceWith(li);
  else $('peers').append(li);
  app.peers.set(id, peer);
  if (initiator) peer.start();
  else announce(`${peer.name} joined the room.`);
  return peer;
}

/** @param {string} id */
function removePeer(id) {
  const peer = app.peers.get(id);
  if (!peer) return;
  const reason = `${peer.name} left the room before this finished. Ask them to rejoin, then send again.`;
  peer.close(reason);
  abandonInterrupted(app.interrupted.get(id) ?? new Map(), reason);
  app.interrupted.delete(id);
  app.peers.delete(id);
  $('peers').querySelector(`li[data-peer="${CSS.escape(id)}"]`)?.remove();
  updateNoPeers();
  announce(`${peer.name} left the room.`);
}

/**
 * A receiver refuses a bigger offer as broken (and fails the peer): say so before sending.
 * @param {Item[]} items
 */
function fitsOneOffer(items) {
  if (items.length <= MAX_FILES_PER_OFFER) return true;
  showAlert(`That is ${items.length} files, and one offer holds at most ${MAX_FILES_PER_OFFER}: send them in parts, or as a ZIP archive.`);
  return false;
}

/**
 * To one person: if their words are not confirmed yet, the send waits for that.
 * @param {Peer} peer
 * @param {string} kind
 * @param {Item[]} items
 */
function sendToPeer(peer, kind, items) {
  if (items.length === 0 || !fitsOneOffer(items)) return;
  if (peer.state !== 'secure') {
    showAlert(`${peer.name} is not connected yet. Wait until the verification words appear, then send.`);
    return;
  }
  showAlert('');
  peer.send(kind, items);
  if (!peer.verified) announce(`Confirm the words with ${peer.name} first; then it is sent.`);
}

/**
 * "Send to everyone": only the people whose words were confirmed.
 * @param {string} kind
 * @param {Item[]} items
 */
function sendToEveryone(kind, items) {
  if (items.length === 0 || !fitsOneOffer(items)) return;
  const peers = [...app.peers.values()];
  const verified = peers.filter((p) => p.state === 'secure' && p.verified);
  if (verified.length === 0) {
    showAlert(peers.some((p) => p.state === 'secure')
      ? 'Sending to everyone goes only to people whose words you confirmed. Compare the words with someone and press “The words match”, then send.'
      : peers.length
        ? 'Nobody is connected yet. Wait until the verification words appear next to a person, then send.'
        : 'Nobody else is in the room yet. Share the link first.');
    return;
  }
  showAlert('');
  for (const peer of verified) peer.send(kind, items);
}

/** @param {string} text */
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    announce('Copied.');
  } catch {
    showAlert('Could not copy automatically: select the text and copy it by hand.');
  }
}

function sendText() {
  const input = element('text-input', HTMLTextAreaElement);
  const text = input.value;
  if (!text) return;
  const blob = new Blob([text]);
  if (blob.size > TEXT_MAX_BYTES) {
    showAlert(`That text is longer than ${TEXT_MAX_BYTES / 1024 / 1024} MiB: save it as a file and send the file.`);
    return;
  }
  sendToEveryone('text', [{ name: 'text.txt', blob }]);
  input.value = '';
}

/** @param {Transfer} t */
function showTransfer(t) {
  hook?.transfers.push(t);
  $('transfers-card').hidden = false;
  const { li, update } = transferRow(t, copyText);
  $('transfers').prepend(li);
  let scheduled = false;
  t.addEventListener('change', () => {
    if (t.finished) {
      update();
      announceTransfer(t);
    } else if (!scheduled) {
      scheduled = true;
      setTimeout(() => {
        scheduled = false;
        update();
      }, 200);
    }
  });
  announce(t.direction === 'out' ? `Sending ${t.name} to ${t.peer}.` : `Receiving ${t.name} from ${t.peer}.`);
}

/** @param {Transfer} t */
function announceTransfer(t) {
  const what = `${t.name} ${t.direction === 'out' ? 'to' : 'from'} ${t.peer}`;
  announce(t.state === 'done' ? `${what}: done. ${t.message}` : `${what}: ${t.message}`);
}

// ---- signaling --------------------------------------------------------------------------

/** @param {WireMessage} msg */
function onServerMessage(msg) {
  if (msg.type === 'peer-joined') {
    // Its first signal may have overtaken this announcement (see onSignal): keep that peer.
    if (!app.peers.has(msg.peer)) addPeer(msg.peer, false);
  }
  else if (msg.type === 'peer-left') removePeer(msg.peer);
  else if (msg.type === 'peer-interrupted') app.peers.get(msg.peer)?.onInterrupted();
  else if (msg.type === 'signal') onSignal(msg);
  else if (msg.type === 'error') showAlert(roomErrorText(msg.code) || `The server refused a message: ${msg.message}`);
}

/** @param {WireMessage} msg a `signal` message: `from` the peer, `data` its content */
function onSignal({ from, data }) {
  if (!data || typeof data !== 'object') return;
  // A signal can overtake the peer-joined that announced its sender: create the peer then.
  const known = app.peers.get(from);
  // A new session from a peer replaces the old one (its running transfers resume in the new one).
  const peer = known && !known.isNewSession(data) ? known : (data.t === 'hs1' || data.t === 'sdp' ? addPeer(from, false) : null);
  peer?.onSignal(data);
}

/** @type {Record<string, string>} */
const SERVER_STATE = {
  connecting: 'Connecting to the server…',
  online: 'Connected to the server',
  reconnecting: 'Connection to the server lost, reconnecting… (transfers in progress continue)',
  offline: 'Not connected to the server',
};

function onSignalingState() {
  const { state } = signaling;
  const el = $('server-state');
  el.dataset.state = state;
  el.textContent = SERVER_STATE[state];
  element('create', HTMLButtonElement).disabled = state !== 'online';
  element('join', HTMLButtonElement).disabled = state !== 'online';
}

async function onExpired() {
  // The server forgot us (offline longer than its grace period): rejoin under the new id.
  const room = app.room;
  for (const id of [...app.peers.keys()]) removePeer(id);
  app.room = null;
  if (room && (await joinRoom(room))) {
    showAlert('The connection to the server was lost for too long, so you rejoined the room. Connections to the others are being set up again.');
  }
}

function roomFromHash() {
  const match = /^#room=([A-Za-z0-9_-]{1,64})$/.exec(location.hash);
  return match ? match[1] : null;
}

function bindControls() {
  $('create').addEventListener('click', createRoom);
  $('join-form').addEventListener('submit', (event) => {
    event.preventDefault();
    joinRoom(element('join-code', HTMLInputElement).value.trim());
  });
  $('leave').addEventListener('click', leaveRoom);
  $('copy-link').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(element('room-link', HTMLAnchorElement).href);
      announce('Link copied.');
    } catch {
      showAlert('Could not copy automatically: select the link and copy it by hand.');
    }
  });
  for (const [id, kind] of [['file-input', 'files'], ['folder-input', 'folder']]) {
    const input = element(id, HTMLInputElement);
    input.addEventListener('change', () => {
      sendToEveryone(kind, fileItems([...(input.files ?? [])]));
      input.value = '';
    });
  }
  $('text-form').addEventListener('submit', (event) => {
    event.preventDefault();
    sendText();
  });
  // Sleep, Wi-Fi to cellular: the old network paths may be gone, so look for new ones now.
  const networkChanged = () => {
    for (const peer of app.peers.values()) peer.restartIce();
  };
  window.addEventListener('online', networkChanged);
  navigator.connection?.addEventListener('change', networkChanged);
  // Closing the page: tell the others now rather than after the server's resume grace period.
  window.addEventListener('pagehide', () => {
    if (app.room) signaling.send({ type: 'leave' });
  });
  document.addEventListener('dragover', (event) => event.preventDefault());
  document.addEventListener('drop', async (event) => {
    event.preventDefault();
    if (!app.room) return;
    for (const [kind, items] of await droppedItems(event.dataTransfer)) sendToEveryone(kind, items);
  });
}

async function main() {
  $('relay-mode').hidden = !relayOnly;
  initName();
  bindControls();
  if (!window.RTCPeerConnection || !(await x25519Supported())) {
    showAlert('This browser cannot run Tallow: it lacks WebRTC or X25519 in WebCrypto. Use a current Chrome, Edge, Firefox or Safari.');
    return;
  }
  signaling.addEventListener('state', onSignalingState);
  signaling.addEventListener('message', (event) => onServerMessage(/** @type {CustomEvent} */ (event).detail));
  signaling.addEventListener('expired', onExpired);
  signaling.addEventListener('resumed', () => announce('Reconnected to the server; your room is unchanged.'));
  registerDownloads();
  await refreshIce();
  try {
    await signaling.connect();
  } catch (error) {
    showAlert(`${errorText(error)} The page keeps trying.`);
    await new Promise((resolve) => signaling.addEventListener('welcome', resolve, { once: true }));
    showAlert('');
  }
  const code = roomFromHash();
  if (code) await joinRoom(code);
}

main();
