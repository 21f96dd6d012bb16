// DOM for people and transfers. Text goes in with textContent only, never as HTML.
import { describeProgress, formatBytes } from './format.js';

/** Create an element: h('p', {class: 'x', 'data-testid': 'y'}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

const PEER_STATE = {
  connecting: 'Connecting…',
  securing: 'Checking keys…',
  secure: 'Connected, end-to-end encrypted',
  failed: 'Not connected',
  closed: 'Left',
};

/** One list item per other person; re-rendered in place on every change. */
export function renderPeer(li, peer, onFiles) {
  li.replaceChildren();
  li.dataset.testid = 'peer';
  li.dataset.peer = peer.id;
  li.dataset.state = peer.state;
  const inputId = `send-${peer.id}`;
  const secure = peer.state === 'secure';
  li.append(
    h('h3', {}, peer.name || 'Someone'),
    h('p', { class: `state ${peer.state}` }, PEER_STATE[peer.state]),
  );
  if (peer.sas) {
    li.append(
      h('p', { class: 'sas-line' },
        'Verification words: ',
        h('strong', { class: 'sas', 'data-testid': 'sas' }, peer.sas.join(' ')),
      ),
      h('p', { class: 'hint' }, `${peer.name} must see the same words. If they differ, stop: someone is in the middle.`),
    );
  }
  if (peer.problem) li.append(h('p', { class: 'problem' }, peer.problem));
  if (secure) {
    const input = h('input', {
      type: 'file', id: inputId, multiple: true, class: 'visually-hidden',
      onchange: (event) => {
        onFiles([...event.target.files]);
        event.target.value = '';
      },
    });
    // The input sits inside its label so the label shows the keyboard focus (:focus-within).
    li.append(h('label', { for: inputId, class: 'button' }, `Send files to ${peer.name}…`, input));
  }
}

function progressLabel(t) {
  return t.direction === 'out' ? `Sending ${t.name} to ${t.peer}` : `Receiving ${t.name} from ${t.peer}`;
}

/** Build a transfer row once; `update` refreshes it (cheaply, at most a few times a second). */
export function transferRow(t) {
  const percent = () => (t.size === 0 ? (t.finished ? 100 : 0) : Math.floor((100 * t.bytes) / t.size));
  const bar = h('progress', {
    max: 100, value: 0, role: 'progressbar', 'data-testid': 'progress',
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0, 'aria-label': progressLabel(t),
  });
  const meta = h('p', { class: 'meta' });
  const message = h('p', { class: 'message' });
  const cancel = h('button', { type: 'button', class: 'cancel', onclick: () => t.cancel() }, 'Cancel');
  cancel.setAttribute('aria-label', `Cancel ${progressLabel(t).toLowerCase()}`);
  const actions = h('div', { class: 'actions' }, cancel);
  const li = h('li', { class: `transfer ${t.direction}`, 'data-direction': t.direction },
    h('p', { class: 'title' },
      h('span', { class: 'name' }, t.name),
      h('span', { class: 'who' }, `${t.direction === 'out' ? 'to' : 'from'} ${t.peer} · ${formatBytes(t.size)}`),
    ),
    bar, meta, message, actions);

  const update = () => {
    const value = percent();
    bar.value = value;
    bar.setAttribute('aria-valuenow', String(value));
    bar.setAttribute('aria-valuetext', `${value}%`);
    li.dataset.state = t.state;
    meta.textContent = describeProgress(t);
    message.textContent = t.message;
    message.className = `message ${t.state}`;
    cancel.hidden = t.finished;
    if (t.url && !actions.querySelector('a')) {
      actions.append(h('a', {
        class: 'button primary', href: t.url, download: t.name, 'data-testid': 'received-file',
      }, `Save ${t.name}`));
    }
  };
  update();
  return { li, update };
}
