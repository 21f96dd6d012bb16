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
import { safeName } from './names.js';
import { Transfers } from './transfer.js';

const CONNECT_TIMEOUT_MS = 25_000;
/** ICE restart: a blip shorter than the grace recovers by itself; each attempt gets a timeout. */
const DISCONNECTED_GRACE_MS = 2_000;
const RESTART_TIMEOUT_MS = 15_000;
const MAX_RESTARTS = 4;

export class Peer extends EventTarget {
  /**
   * @param {object} o
   * @param {(data: object) => void} o.signal sends `data` to this peer through the server
   * @param {{iceServers: object[], relayOnly: boolean}} o.ice
   * @param {(t: import('./transfer.js').Transfer) => void} o.onTransfer
   */
  /** `interrupted` (tid -> Transfer) holds transfers cut off in an earlier session with this peer. */
  constructor({ id, name, initiator, selfId, selfName, signal, ice, onTransfer, interrupted, hook }) {
    super();
    Object.assign(this, { id, name, initiator, selfName, signal, ice, onTransfer, interrupted, hook });
    // The data channel closed while the peer may still be in the room: a new session may follow.
    this.lost = false;
    this.state = 'connecting'; // connecting | securing | secure | failed | closed
    // Unverified until the person confirms the words match; sends wait for that (pendingSends).
    this.verified = false;
    this.pendingSends = [];
    // ICE restarts in a row without getting connected again (reset on success).
    this.restarts = 0;
    this.reconnecting = false;
    this.problem = '';
    this.sas = null;
    this.session = null;
    this.channel = null;
    this.transfers = null;
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
    this.hookEntry = { peer: id, pc: this.pc, dc: null, channel: null };
    hook?.connections.push(this.hookEntry);
  }

  /** Initiator only: open the data channel, make the offer, send hs1. */
  async start() {
    await this.guard(async () => {
      this.attach(this.pc.createDataChannel(CHANNEL_LABEL, { ordered: true }));
      await this.pc.setLocalDescription(await this.pc.createOffer());
      this.signal({ t: 'sdp', sdp: this.pc.localDescription.toJSON() });
      await this.step(await this.handshake.start());
    });
  }

  /** A `signal` from this peer. */
  async onSignal(data) {
    await this.guard(async () => {
      if (data.t === 'sdp') return this.onDescription(data.sdp);
      if (data.t === 'ice') return this.onCandidate(data.c);
      if (['hs1', 'hs2', 'hs3'].includes(data.t)) return this.step(await this.handshake.receive(data));
      if (data.t === 'restart') return this.initiator ? this.restartIce() : undefined;
      throw new Error(`unknown signal ${data.t}`);
    });
  }

  async onDescription(sdp) {
    // An answer to an offer already answered (restarts that crossed): nothing to apply.
    if (sdp.type === 'answer' && this.pc.signalingState !== 'have-local-offer') return;
    await this.pc.setRemoteDescription(sdp);
    if (sdp.type === 'offer') {
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      this.signal({ t: 'sdp', sdp: this.pc.localDescription.toJSON() });
    }
    for (const c of this.remoteCandidates.splice(0)) await this.pc.addIceCandidate(c);
    // A restart on a path that never went down completes without any ICE state change.
    this.onIceState();
  }

  async onCandidate(candidate) {
    if (!this.pc.remoteDescription) this.remoteCandidates.push(candidate);
    else await this.pc.addIceCandidate(candidate);
  }

  async step({ reply, session }) {
    if (reply) this.signal(reply);
    if (session) {
      this.session = session;
      this.sas = session.sas;
      this.setState('securing');
      this.maybeStartChannel();
    }
  }

  /** A channel the other side opened: the responder takes the first `tallow` channel, no other. */
  onRemoteChannel(channel) {
    if (this.initiator || this.dc || channel.label !== CHANNEL_LABEL || !channel.ordered) {
      channel.close();
      this.fail(`${this.name} (or someone between you) opened an unexpected extra connection, which Tallow refuses. Nothing more was sent. Compare the words with them again in a new room; if it happens again, someone may be interfering.`);
      return;
    }
    this.attach(channel);
  }

  attach(dc) {
    this.dc = dc;
    this.hookEntry.dc = dc;
    this.channel = new SecureChannel(dc, {
      onControl: (message) => (message.t === 'name' ? this.rename(message.name) : this.transfers.onControl(message)),
      onChunk: (id, data) => this.transfers.onChunk(id, data),
      onFailure: (reason) => this.fail(`The secure connection with ${this.name} failed: ${reason}. Nothing more was sent. Reload and try again; if it happens again, someone may be interfering.`),
    }, this.hook && ((frame) => this.hook.frames.push({ peer: this.id, frame, label: dc.label, stream: dc.id })));
    this.hookEntry.channel = this.channel;
    this.transfers = new Transfers(this.channel, () => this.name, this.onTransfer, this.interrupted);
    dc.addEventListener('open', () => this.maybeStartChannel());
    dc.addEventListener('close', () => this.onChannelClosed());
  }

  maybeStartChannel() {
    if (!this.session || this.dc?.readyState !== 'open' || this.channel.session) return;
    try {
      this.channel.start(this.session);
    } catch (error) {
      this.fail(`The secure connection with ${this.name} was refused: ${error.message}. Nothing more was sent.`);
      return;
    }
    this.channel.confirmed.then(() => {
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
   * its keys stay, so running transfers continue where they were. Only the initiator makes
   * offers; the responder asks it to.
   */
  restartIce() {
    if (this.state !== 'secure') return;
    if (this.restarts >= MAX_RESTARTS) {
      this.fail(`The connection to ${this.name} was lost and could not be restored. Check your network; if they are still in the room, reload the page to reconnect.`);
      return;
    }
    this.restarts += 1;
    this.reconnecting = true;
    this.hook?.iceRestarts?.push(this.id);
    this.dispatchEvent(new Event('change'));
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => this.restartIce(), RESTART_TIMEOUT_MS);
    if (!this.initiator) this.signal({ t: 'restart' });
    else if (this.pc.signalingState === 'stable') { // else an offer is out: its answer comes first
      this.guard(async () => {
        await this.pc.setLocalDescription(await this.pc.createOffer({ iceRestart: true }));
        this.signal({ t: 'sdp', sdp: this.pc.localDescription.toJSON() });
      });
    }
  }

  onChannelClosed() {
    if (this.state !== 'secure') return;
    // A peer that closes its page says `leave` first; give that a moment to arrive, so the
    // message can say "left" rather than guess. Otherwise the app starts a new session ('lost').
    this.lost = true;
    setTimeout(() => {
      if (this.state !== 'secure') return;
      this.shutdown('failed', `The connection to ${this.name} closed.`, true);
      this.dispatchEvent(new Event('lost'));
    }, 1000);
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
  send(kind, items) {
    if (this.state !== 'secure') return;
    if (this.verified) this.transfers.offer(kind, items);
    else {
      this.pendingSends.push([kind, items]);
      this.dispatchEvent(new Event('change'));
    }
  }

  /** The person compared the words and they match: now this peer may be sent to. */
  verify() {
    if (this.state !== 'secure' || this.verified) return;
    this.verified = true;
    this.transfers.resumeInterrupted();
    for (const [kind, items] of this.pendingSends.splice(0)) this.transfers.offer(kind, items);
    this.dispatchEvent(new Event('change'));
  }

  /** The person would rather not send what waits for verification. */
  dropPendingSends() {
    this.pendingSends = [];
    this.dispatchEvent(new Event('change'));
  }

  async guard(work) {
    try {
      await work();
    } catch (error) {
      this.fail(`Setting up the connection with ${this.name} failed (${error.message}). Reload the page to try again.`);
    }
  }

  fail(text) {
    if (this.state === 'failed' || this.state === 'closed') return;
    this.problem = text;
    this.shutdown('failed', text);
  }

  /** The peer left the room or we did. */
  close(reason) {
    if (this.state === 'closed') return;
    this.shutdown('closed', reason);
  }

  /** With `resumable`, running transfers wait for the next session with this peer. */
  shutdown(state, reason, resumable = false) {
    clearTimeout(this.timer);
    clearTimeout(this.blip);
    clearTimeout(this.restartTimer);
    this.pendingSends = [];
    this.setState(state);
    this.transfers?.closeAll(reason, resumable);
    this.dc?.close();
    this.pc.close();
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new Event('change'));
  }

  /** Names go end to end: the one the server saw at `join` may be out of date. */
  sendName(name) {
    if (this.state === 'secure') this.channel.control({ t: 'name', name }).catch(() => {});
  }

  rename(name) {
    this.name = safeName(name);
    this.dispatchEvent(new Event('change'));
  }
}
