// One other person in the room: an RTCPeerConnection, the key agreement, the encrypted channel.
//
// The peer that joined later is the initiator: it creates the data channel, makes the SDP
// offer and starts the handshake. SDP, ICE candidates and handshake messages go through the
// signaling server inside `signal` messages; nothing else does.
//
// Exactly one data channel per peer session: the initiator's, labelled CHANNEL_LABEL. Any other
// channel (one the responder did not expect, a second one, or any opened towards the initiator)
// can only come from someone inside DTLS, such as a server that swapped the SDP fingerprints: it
// is refused and the peer fails, so recorded frames cannot be replayed into it and the session
// keys are never started twice.
import { CHANNEL_LABEL, SecureChannel } from './channel.js';
import { Handshake } from './handshake.js';
import { errorText } from './format.js';
import { safeName } from './names.js';
import { Transfers } from './transfer.js';

/** @typedef {import('./transfer.js').Item} Item */
/** @typedef {import('./signaling.js').WireMessage} WireMessage */

const CONNECT_TIMEOUT_MS = 25_000;
/** ICE restart: a blip shorter than the grace recovers by itself; each attempt gets a timeout. */
const DISCONNECTED_GRACE_MS = 2_000;
const RESTART_TIMEOUT_MS = 15_000;
const MAX_RESTARTS = 4;
/**
 * Once an ICE restart brought the link back, a running transfer must move again within this, or
 * the initiator replaces the session (SCTP may still be backing off its retransmissions, or the
 * other side may still send into the path the restart replaced).
 */
const STALL_TIMEOUT_MS = 30_000;

/**
 * What the test harness installs as `window.__tallowTestHook` (docs/webapp.md, "Test hook").
 * @typedef {{handshakes: object[], frames: object[], connections: object[], transfers: object[],
 *   iceRestarts?: string[]}} TestHook
 */

/** @typedef {{iceServers: RTCIceServer[], relayOnly: boolean, ttl: number}} IceSettings */

export class Peer extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.id the peer's server id
   * @param {string} o.name its display name until its own arrives
   * @param {boolean} o.initiator whether this side opens the channel (it joined later)
   * @param {string} o.selfId this page's server id
   * @param {() => string} o.selfName this person's display name, read when it is sent
   * @param {(data: object) => void} o.signal sends `data` to this peer through the server
   * @param {IceSettings} o.ice
   * @param {(t: import('./transfer.js').Transfer) => void} o.onTransfer
   * @param {Map<string, import('./transfer.js').Transfer>} o.interrupted transfers (by tid) cut
   *   off in an earlier session with this peer
   * @param {TestHook | null} o.hook
   */
  constructor({ id, name, initiator, selfId, selfName, signal, ice, onTransfer, interrupted, hook }) {
    super();
    this.id = id;
    this.name = name;
    this.initiator = initiator;
    this.selfName = selfName;
    this.signal = signal;
    this.ice = ice;
    this.onTransfer = onTransfer;
    this.interrupted = interrupted;
    this.hook = hook;
    // The data channel closed while the peer may still be in the room: a new session may follow.
    this.lost = false;
    this.state = 'connecting'; // connecting | securing | secure | failed | closed
    // Unverified until the person confirms the words match; sends wait for that (pendingSends).
    this.verified = false;
    /** Sends waiting for the words to be confirmed: [kind, items]. @type {[string, Item[]][]} */
    this.pendingSends = [];
    // ICE restart attempts since the path went down (one restart at a time: `reconnecting`).
    this.restarts = 0;
    this.reconnecting = false;
    /** Signals are handled one at a time, in order (onSignal). @type {Promise<void>} */
    this.signals = Promise.resolve();
    this.problem = '';
    /** @type {string[] | null} */
    this.sas = null;
    /** @type {import('./handshake.js').Session | null} */
    this.session = null;
    /** The data channel and what runs over it, from attach() on. @type {RTCDataChannel | null} */
    this.dc = null;
    /** @type {SecureChannel | null} */
    this.channel = null;
    /** @type {Transfers | null} */
    this.transfers = null;
    /** Candidates that arrived before the description they belong to. @type {RTCIceCandidateInit[]} */
    this.remoteCandidates = [];
    this.handshake = new Handshake({ initiator, selfId, peerId: id, hook });
    this.pc = new RTCPeerConnection({
      iceServers: ice.iceServers,
      iceTransportPolicy: ice.relayOnly ? 'relay' : 'all',
    });
    this.pc.addEventListener('icecandidate', ({ candidate }) => {
      if (candidate) this.signal({ t: 'ice', c: candidate.toJSON() });
    });
    this.pc.addEventListener('connectionstatechange', () => this.onConnectionState());
    this.pc.addEventListener('iceconnectionstatechange', () => this.onIceState());
    this.pc.addEventListener('datachannel', ({ channel }) => this.onRemoteChannel(channel));
    this.timer = setTimeout(() => this.fail(this.unreachableText()), CONNECT_TIMEOUT_MS);
    // Relay-only without a relay can never connect: say so now rather than after the timeout.
    if (ice.relayOnly && !this.hasRelay()) queueMicrotask(() => this.fail(this.unreachableText()));
    this.hookEntry = {
      peer: id,
      pc: this.pc,
      dc: /** @type {RTCDataChannel | null} */ (null),
      channel: /** @type {SecureChannel | null} */ (null),
    };
    hook?.connections.push(this.hookEntry);
  }

  /**
   * Initiator only: send hs1, open the data channel, make the offer. hs1 goes first: it tells
   * the other side that a new session begins (main.js replaces an earlier one with it).
   */
  async start() {
    await this.guard(async () => {
      await this.step(await this.handshake.start());
      this.attach(this.pc.createDataChannel(CHANNEL_LABEL, { ordered: true }));
      await this.sendDescription(await this.pc.createOffer());
    });
  }

  /**
   * Apply our SDP offer or answer and send it (with the candidates gathered so far) to the peer.
   * @param {RTCSessionDescriptionInit} description
   */
  async sendDescription(description) {
    await this.pc.setLocalDescription(description);
    const local = this.pc.localDescription;
    if (!local) throw new Error('no local description was set');
    this.signal({ t: 'sdp', sdp: local.toJSON() });
  }

  /**
   * Whether `data`, a signal from this peer, opens a new session that replaces this one: an hs1
   * (which an initiator sends first) once this side's handshake began or this session ended.
   * Only initiators open sessions; anything else belongs to this one (an offer may restart ICE).
   * @param {WireMessage} data
   */
  isNewSession(data) {
    if (this.initiator || data.t !== 'hs1') return false;
    return this.handshake.step !== 'hs1' || this.lost || this.state === 'failed';
  }

  /**
   * A `signal` from this peer. Each is handled after the one before it finished: a restart's
   * offer, answer and candidates must not interleave with the previous ones.
   * @param {WireMessage} data
   */
  onSignal(data) {
    this.signals = this.signals.then(() => this.handleSignal(data));
    return this.signals;
  }

  /** @param {WireMessage} data */
  async handleSignal(data) {
    await this.guard(async () => {
      if (data.t === 'sdp') return this.onDescription(data.sdp);
      if (data.t === 'ice') return this.onCandidate(data.c);
      if (['hs1', 'hs2', 'hs3'].includes(data.t)) return this.step(await this.handshake.receive(data));
      if (data.t === 'restart') return this.initiator ? this.onRestartRequest() : undefined;
      throw new Error(`unknown signal ${data.t}`);
    });
  }

  /** @param {RTCSessionDescriptionInit} sdp */
  async onDescription(sdp) {
    // An answer to an offer already answered (restarts that crossed): nothing to apply.
    if (sdp.type === 'answer' && this.pc.signalingState !== 'have-local-offer') return;
    await this.pc.setRemoteDescription(sdp);
    if (sdp.type === 'offer') {
      await this.sendDescription(await this.pc.createAnswer());
    }
    for (const c of this.remoteCandidates.splice(0)) await this.addCandidate(c);
    // A restart on a path that never went down completes without any ICE state change.
    this.onIceState();
  }

  /** @param {RTCIceCandidateInit} candidate */
  async onCandidate(candidate) {
    if (!this.pc.remoteDescription) this.remoteCandidates.push(candidate);
    else await this.addCandidate(candidate);
  }

  /**
   * A candidate of an ICE generation that a restart replaced, or of an earlier session whose hs1
   * and offer a dying server replica lost (onInterrupted), does not fit the current description:
   * the browser refuses it, and it is dropped (the current one has candidates of its own).
   * @param {RTCIceCandidateInit} candidate
   */
  async addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch {
      // dropped: see above
    }
  }

  /** @param {{reply: object | null, session: import('./handshake.js').Session | null}} result */
  async step({ reply, session }) {
    if (this.state === 'failed' || this.state === 'closed') return; // such as relay-only without a relay
    if (reply) this.signal(reply);
    if (session) {
      this.session = session;
      this.sas = session.sas;
      this.setState('securing');
      this.maybeStartChannel();
    }
  }

  /** A channel the other side opened: the responder takes the first `tallow` channel, no other. */
  /** @param {RTCDataChannel} channel */
  onRemoteChannel(channel) {
    if (this.initiator || this.dc || channel.label !== CHANNEL_LABEL || !channel.ordered) {
      channel.close();
      this.fail(`${this.name} (or someone between you) opened an unexpected extra connection, which Tallow refuses. Nothing more was sent. Compare the words with them again in a new room; if it happens again, someone may be interfering.`);
      return;
    }
    this.attach(channel);
  }

  /** @param {RTCDataChannel} dc */
  attach(dc) {
    const hook = this.hook;
    this.dc = dc;
    this.hookEntry.dc = dc;
    this.channel = new SecureChannel(dc, {
      onControl: (message) => (message.t === 'name' ? this.rename(message.name) : this.attached().transfers.onControl(message)),
      onChunk: (id, data) => this.attached().transfers.onChunk(id, data),
      onFailure: (reason) => this.fail(`The secure connection with ${this.name} failed: ${reason}. Nothing more was sent. Reload and try again; if it happens again, someone may be interfering.`),
    }, hook && ((frame) => hook.frames.push({ peer: this.id, frame, label: dc.label, stream: dc.id })));
    this.hookEntry.channel = this.channel;
    this.transfers = new Transfers(this.channel, () => this.name, this.onTransfer, this.interrupted);
    dc.addEventListener('open', () => this.maybeStartChannel());
    dc.addEventListener('close', () => this.onChannelClosed());
  }

  /** What attach() set up: a peer is securing or secure only after it. */
  attached() {
    if (!this.channel || !this.transfers) throw new Error('no data channel yet');
    return { channel: this.channel, transfers: this.transfers };
  }

  maybeStartChannel() {
    const channel = this.channel;
    if (!this.session || !channel || this.dc?.readyState !== 'open' || channel.session) return;
    try {
      channel.start(this.session);
    } catch (error) {
      this.fail(`The secure connection with ${this.name} was refused: ${errorText(error)}. Nothing more was sent.`);
      return;
    }
    channel.confirmed.then(() => {
      clearTimeout(this.timer);
      if (this.state === 'securing') this.setState('secure');
      this.sendName(this.selfName());
    });
  }

  onConnectionState() {
    // Once secure, a failure is handled by an ICE restart (onIceState) instead.
    if (this.pc.connectionState === 'failed' && this.state !== 'secure') this.fail(this.unreachableText());
  }

  onIceState() {
    const ice = this.pc.iceConnectionState;
    clearTimeout(this.blip);
    if ((ice === 'connected' || ice === 'completed') && this.reconnecting) {
      clearTimeout(this.restartTimer);
      this.reconnecting = false;
      this.restarts = 0;
      if (this.initiator) this.watchForStall();
      this.dispatchEvent(new Event('change'));
    } else if (ice === 'disconnected' && this.state === 'secure' && !this.reconnecting) {
      this.blip = setTimeout(() => this.restartIce(), DISCONNECTED_GRACE_MS);
    } else if (ice === 'failed' && this.state === 'secure') {
      this.restartIce();
    }
  }

  /**
   * The network changed or the path failed: new ICE credentials and candidates, negotiated over
   * the signaling connection (which resumes by itself). The DTLS session, the data channel and
   * its keys stay, so running transfers continue where they were. One restart at a time: a
   * second cause while one runs (the other side's request, the ICE state, a network event)
   * joins it, since a second offer would race the first; each attempt has RESTART_TIMEOUT_MS.
   */
  restartIce() {
    if (this.state !== 'secure' || this.reconnecting) return;
    this.reconnecting = true;
    this.restarts = 0;
    this.attemptRestart();
  }

  /**
   * Initiator: the responder asks to start again: ICE once the session is secure (once per
   * outage: a restart already running takes it in), the whole session before (its handshake
   * message may have been lost, see onInterrupted).
   */
  onRestartRequest() {
    if (this.state === 'secure') this.restartIce();
    else if (this.state === 'connecting' || this.state === 'securing') this.startOver();
  }

  /**
   * The server says signals sent to this peer may have been lost: the server replica holding its
   * connection died (`peer-interrupted`, docs/protocol.md). A session still being set up starts
   * over, since a lost handshake step or description would stall it until CONNECT_TIMEOUT_MS and
   * then fail it: the initiator opens a new session, the responder asks it to. A secure session
   * needs nothing: an ICE restart's lost step is sent again by the restart's own timer.
   */
  onInterrupted() {
    if (this.state !== 'connecting' && this.state !== 'securing') return;
    if (this.initiator) this.startOver();
    else this.signal({ t: 'restart' });
  }

  /** Initiator: end this unfinished session; main.js starts a new one ('lost'). */
  startOver() {
    this.lost = true;
    this.shutdown('failed', `The connection to ${this.name} was interrupted while it was being set up; Tallow is setting up a new one.`, true);
    this.dispatchEvent(new Event('lost'));
  }

  /** Only the initiator makes offers; the responder asks it to. */
  attemptRestart() {
    if (this.state !== 'secure') return;
    if (this.restarts >= MAX_RESTARTS) {
      this.lose(`The connection to ${this.name} was lost and could not be restored.`);
      return;
    }
    this.restarts += 1;
    this.hook?.iceRestarts?.push(this.id);
    this.dispatchEvent(new Event('change'));
    this.restartTimer = setTimeout(() => this.attemptRestart(), RESTART_TIMEOUT_MS);
    if (!this.initiator) this.signal({ t: 'restart' });
    else if (this.pc.signalingState === 'stable') { // else an offer is out: its answer comes first
      this.guard(async () => {
        await this.sendDescription(await this.pc.createOffer({ iceRestart: true }));
      });
    }
  }

  /**
   * Initiator, after an ICE restart: if a running transfer (either way) moves nothing for
   * STALL_TIMEOUT_MS, start a new session, which resumes it from its acknowledged offset.
   */
  watchForStall() {
    const { channel, transfers } = this.attached();
    const mark = channel.progressMark();
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => {
      if (this.reconnecting || !transfers.running() || channel.progressMark() !== mark) return;
      this.lose(`The connection to ${this.name} came back but moved nothing for ${STALL_TIMEOUT_MS / 1000} s, so Tallow set up a new one.`);
    }, STALL_TIMEOUT_MS);
  }

  onChannelClosed() {
    if (this.state !== 'secure') return;
    // A peer that closes its page says `leave` first; give that a moment to arrive, so the
    // message can say "left" rather than guess. Otherwise the app starts a new session ('lost').
    this.lost = true;
    setTimeout(() => this.lose(`The connection to ${this.name} closed.`), 1000);
  }

  /**
   * The session ended for a reason of the network, not of security: running transfers wait for
   * the next session with this peer (the initiator starts it, main.js), which resumes them.
   * @param {string} text what to tell the person
   */
  lose(text) {
    if (this.state !== 'secure') return;
    this.lost = true;
    this.problem = text;
    this.shutdown('failed', text, true);
    this.dispatchEvent(new Event('lost'));
  }

  hasRelay() {
    return this.ice.iceServers.some((s) => [s.urls].flat().some((u) => /^turns?:/.test(u)));
  }

  unreachableText() {
    const relays = this.hasRelay();
    if (this.ice.relayOnly && !relays) {
      return `Relay-only mode is on, but this Tallow server offers no TURN relay, so ${this.name} cannot be reached. Remove relay=1 from the address, or ask the server’s operator to configure TURN.`;
    }
    if (!relays) {
      return `Could not connect to ${this.name}: your networks block a direct connection and this Tallow server has no TURN relay to go through. Try from the same network, or ask the operator to set TURN_URLS and TURN_SECRET.`;
    }
    return `Could not connect to ${this.name}, not even through the TURN relay. Check both connections, then reload both pages.`;
  }

  /**
   * Offer `items` ({name, blob}) as one transfer of `kind` ('files', 'folder' or 'text'). To an
   * unverified peer the offer waits until the person confirms the words (`verify`).
   */
  /**
   * @param {string} kind
   * @param {Item[]} items
   */
  send(kind, items) {
    if (this.state !== 'secure') return;
    if (this.verified) this.attached().transfers.offer(kind, items);
    else {
      this.pendingSends.push([kind, items]);
      this.dispatchEvent(new Event('change'));
    }
  }

  /** The person compared the words and they match: now this peer may be sent to. */
  verify() {
    if (this.state !== 'secure' || this.verified) return;
    this.verified = true;
    const { transfers } = this.attached();
    transfers.resumeInterrupted();
    for (const [kind, items] of this.pendingSends.splice(0)) transfers.offer(kind, items);
    this.dispatchEvent(new Event('change'));
  }

  /** The person would rather not send what waits for verification. */
  dropPendingSends() {
    this.pendingSends = [];
    this.dispatchEvent(new Event('change'));
  }

  /**
   * Run a connection step; its failure fails the peer, or, once secure (an ICE restart's step),
   * ends this session for a new one.
   * @param {() => Promise<unknown>} work
   */
  async guard(work) {
    try {
      await work();
    } catch (error) {
      this.lose(`The connection to ${this.name} broke (${errorText(error)}).`);
      this.fail(`Setting up the connection with ${this.name} failed (${errorText(error)}). Reload the page to try again.`);
    }
  }

  /** @param {string} text what to tell the person */
  fail(text) {
    if (this.state === 'failed' || this.state === 'closed') return;
    this.problem = text;
    this.shutdown('failed', text);
  }

  /** The peer left the room or we did. @param {string} reason */
  close(reason) {
    if (this.state === 'closed') return;
    this.shutdown('closed', reason);
  }

  /**
   * With `resumable`, running transfers wait for the next session with this peer.
   * @param {string} state
   * @param {string} reason
   */
  shutdown(state, reason, resumable = false) {
    clearTimeout(this.timer);
    clearTimeout(this.blip);
    clearTimeout(this.restartTimer);
    clearTimeout(this.stallTimer);
    this.pendingSends = [];
    this.setState(state);
    this.transfers?.closeAll(reason, resumable);
    this.dc?.close();
    this.pc.close();
  }

  /** @param {string} state */
  setState(state) {
    this.state = state;
    this.dispatchEvent(new Event('change'));
  }

  /** Names go end to end: the one the server saw at `join` may be out of date. @param {string} name */
  sendName(name) {
    if (this.state === 'secure') this.attached().channel.control({ t: 'name', name }).catch(() => {});
  }

  /** @param {unknown} name as the peer sent it */
  rename(name) {
    this.name = safeName(name);
    this.dispatchEvent(new Event('change'));
  }
}
