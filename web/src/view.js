// DOM for people and transfers. Text goes in with textContent only, never as HTML.
import { describeProgress, formatBytes } from './format.js';

/** @typedef {import('./transfer.js').Transfer} Transfer */

/**
 * Create an element: h('p', {class: 'x', 'data-testid': 'y'}, 'text', child). Attributes named
 * `on...` are listeners; false, null and undefined leave an attribute out.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {(Node | string | null | undefined)[]} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), /** @type {EventListener} */ (value));
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

/** @type {Record<string, string>} */
const PEER_STATE = {
  connecting: 'Connecting…',
  securing: 'Checking keys…',
  secure: 'Connected, end-to-end encrypted',
  failed: 'Not connected',
  closed: 'Left',
};

/**
 * One list item per other person; re-rendered in place on every change. `on` has
 * `files(files)` (send to this person), `verify()` (the words match) and `dropPending()`.
 * @param {HTMLLIElement} li
 * @param {import('./peer.js').Peer} peer
 * @param {{files: (files: File[]) => void, verify: () => void, dropPending: () => void}} on
 */
export function renderPeer(li, peer, on) {
  li.replaceChildren();
  li.dataset.testid = 'peer';
  li.dataset.peer = peer.id;
  li.dataset.state = peer.state;
  li.dataset.verified = String(peer.verified);
  li.dataset.link = peer.reconnecting ? 'reconnecting' : 'up';
  const inputId = `send-${peer.id}`;
  const secure = peer.state === 'secure';
  li.append(
    h('h3', {}, peer.name || 'Someone'),
    h('p', { class: `state ${peer.state}` }, peer.reconnecting ? 'Connection lost, reconnecting…' : PEER_STATE[peer.state],
      secure ? h('span', { class: `badge ${peer.verified ? 'verified' : 'unverified'}` }, peer.verified ? ' · verified' : ' · not verified yet') : null),
  );
  if (peer.sas) {
    li.append(
      h('p', { class: 'sas-line' },
        'Verification words: ',
        h('strong', { class: 'sas', 'data-testid': 'sas' }, peer.sas.join(' ')),
      ),
    );
    if (secure && !peer.verified) {
      li.append(
        h('p', { class: 'hint' }, `Ask ${peer.name} to read their words aloud. If they are the same, confirm; if they differ, stop: someone is in the middle.`),
        h('button', { type: 'button', class: 'primary', 'data-testid': 'sas-confirm', onclick: on.verify }, 'The words match'),
      );
    }
  }
  if (peer.pendingSends.length && secure) {
    li.append(h('p', { class: 'alert', role: 'alert' },
      `Waiting to send: compare the words with ${peer.name} first and confirm they match. `,
      h('button', { type: 'button', onclick: on.dropPending }, 'Don’t send')));
  }
  if (peer.problem) li.append(h('p', { class: 'problem' }, peer.problem));
  if (secure) {
    const input = h('input', {
      type: 'file', id: inputId, multiple: true, class: 'visually-hidden',
      onchange: () => {
        on.files([...(input.files ?? [])]);
        input.value = '';
      },
    });
    // The input sits inside its label so the label shows the keyboard focus (:focus-within).
    li.append(h('label', { for: inputId, class: 'button' }, `Send files to ${peer.name}…`, input));
  }
}

/** @type {Record<string, string>} */
const WHAT = { files: 'files', folder: 'folder', text: 'text' };

/** @param {Transfer} t */
function progressLabel(t) {
  return t.direction === 'out' ? `Sending ${t.name} to ${t.peer}` : `Receiving ${t.name} from ${t.peer}`;
}

/**
 * What arrived: each saved file by its relative path, or the text with a copy button.
 * @param {Transfer} t
 * @param {(text: string) => void} copy
 */
function received(t, copy) {
  if (t.kind === 'text') {
    return h('div', { class: 'received-text' },
      h('pre', { 'data-testid': 'received-text' }, t.text),
      h('button', { type: 'button', onclick: () => copy(t.text) }, 'Copy'));
  }
  return h('ul', { class: 'received' },
    ...t.files.map((f) => h('li', { 'data-testid': 'received-file', 'data-name': f.name }, `${f.name} (${formatBytes(f.size)})`)));
}

/**
 * Build a transfer row once; `update` refreshes it (cheaply, at most a few times a second).
 * `copy(text)` puts received text on the clipboard.
 * @param {Transfer} t
 * @param {(text: string) => void} copy
 */
export function transferRow(t, copy) {
  const percent = () => (t.size === 0 ? (t.finished ? 100 : 0) : Math.floor((100 * t.bytes) / t.size));
  const bar = h('progress', {
    max: 100, value: 0, role: 'progressbar', 'data-testid': 'progress',
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0, 'aria-label': progressLabel(t),
  });
  const meta = h('p', { class: 'meta' });
  const message = h('p', { class: 'message' });
  const accept = h('button', { type: 'button', class: 'primary', 'data-testid': 'accept-file', onclick: () => t.accept() }, 'Accept');
  const decline = h('button', { type: 'button', 'data-testid': 'decline-file', onclick: () => t.decline() }, 'Decline');
  const cancel = h('button', { type: 'button', class: 'cancel', onclick: () => t.cancel() }, 'Cancel');
  /** @type {[HTMLButtonElement, string][]} */
  const labelled = [[accept, 'Accept'], [decline, 'Decline'], [cancel, 'Cancel']];
  for (const [button, verb] of labelled) {
    button.setAttribute('aria-label', `${verb} ${verb === 'Cancel' ? progressLabel(t).toLowerCase() : `${t.name} from ${t.peer}`}`);
  }
  const actions = h('div', { class: 'actions' }, accept, decline, cancel);
  const paths = t.files.length > 1
    ? h('ul', { class: 'paths' }, ...t.files.slice(0, 10).map((f) => h('li', {}, f.name)),
      t.files.length > 10 ? h('li', {}, `and ${t.files.length - 10} more`) : null)
    : null;
  const li = h('li', { class: `transfer ${t.direction}`, 'data-direction': t.direction, 'data-kind': t.kind },
    h('p', { class: 'title' },
      h('span', { class: 'name' }, t.name),
      h('span', { class: 'who' }, `${WHAT[t.kind]} ${t.direction === 'out' ? 'to' : 'from'} ${t.peer} · ${formatBytes(t.size)}`),
    ),
    paths, bar, meta, message, actions);

  const update = () => {
    const value = percent();
    bar.value = value;
    bar.setAttribute('aria-valuenow', String(value));
    bar.setAttribute('aria-valuetext', `${value}%`);
    li.dataset.state = t.state;
    meta.textContent = describeProgress(t);
    message.textContent = t.message;
    message.className = `message ${t.state}`;
    const offered = t.state === 'offered' && t.direction === 'in';
    accept.hidden = !offered;
    decline.hidden = !offered;
    cancel.hidden = offered || t.finished || t.state === 'verifying';
    if (t.state === 'done' && t.direction === 'in' && !li.querySelector('.received, .received-text')) {
      actions.before(received(t, copy));
    }
  };
  update();
  return { li, update };
}
