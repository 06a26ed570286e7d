// The side panels: the selected face's bars and the log table (the newest rows first).

import { apiJson, url } from './api.js';
import { connectionStart, state, stats } from './state.js';
import { $, classColor, rgb, setStatus } from './ui.js';

const LOG_ROWS = 20;

let barEls = [];
let logQueue = []; // rows wait here and reach the table at most ten times a second
let logTimer = 0;

// New classes (a model switch, or the first answer): new bars, a new log table head, an empty chart history.
export function setClasses(classes) {
  if (!Array.isArray(classes) || classes.join('\n') === state.classes.join('\n')) return;
  state.classes = classes.slice();
  state.history.clear();
  const bars = $('bars');
  bars.replaceChildren();
  barEls = state.classes.map((name) => {
    const row = document.createElement('div');
    row.className = 'bar-row';
    row.dataset.class = name;
    const label = document.createElement('span');
    label.className = 'name';
    label.textContent = name;
    const track = document.createElement('span');
    track.className = 'track';
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.dataset.class = name;
    bar.dataset.value = '0';
    bar.style.background = rgb(classColor(name));
    track.append(bar);
    const pct = document.createElement('span');
    pct.className = 'pct';
    pct.textContent = '–';
    row.append(label, track, pct);
    bars.append(row);
    return { name, row, bar, pct };
  });
  const head = $('log-table').tHead.rows[0];
  head.replaceChildren(...['frame', 'time', 'face', 'label', 'conf', ...state.classes.map((c) => `p_${c}`)]
    .map((text) => Object.assign(document.createElement('th'), { textContent: text })));
  $('log-table').tBodies[0].replaceChildren();
  logQueue = [];
}

export const valueOf = (face, name) => face.smoothed?.[name] ?? face.probs?.[name] ?? 0;

// Why the shown label is not the top bar, or '': the label smoothing keeps a label until another class leads it by
// the server's smoothing.margin (GET /api/info) in the smoothed probabilities the bars show.
export function heldNote(face, classes, margin) {
  if (!face || !classes.includes(face.label)) return '';
  const shown = valueOf(face, face.label);
  if (!classes.some((name) => valueOf(face, name) > shown)) return '';
  const lead = typeof margin === 'number' ? `by ${Math.round(margin * 100)} points` : 'by the smoothing margin';
  return `held until another class leads ${lead}`;
}

export function showFace(face) {
  $('face-id').textContent = face ? `#${face.id}` : '';
  $('face-conf').textContent = face ? `${Math.round(face.confidence * 100)}%` : '';
  const label = $('face-label');
  label.textContent = face ? face.label : 'no face';
  label.style.color = face ? rgb(classColor(face.label)) : '';
  $('face-note').textContent = heldNote(face, state.classes, state.info?.smoothing?.margin);
  for (const { name, row, bar, pct } of barEls) {
    const v = face ? valueOf(face, name) : 0;
    bar.style.width = `${(v * 100).toFixed(1)}%`;
    bar.dataset.value = String(v);
    pct.textContent = face ? `${Math.round(v * 100)}%` : '–';
    row.classList.toggle('top', !!face && name === face.label);
  }
}

export function addLogRows(result) {
  const time = ((performance.now() - connectionStart.t) / 1000).toFixed(2);
  for (const face of result.faces) {
    logQueue.push([result.frame, time, face.id, face.label, face.confidence.toFixed(2),
      ...state.classes.map((c) => (face.probs?.[c] ?? 0).toFixed(2))]);
    stats.logRows += 1;
  }
  if (!logTimer) logTimer = setTimeout(flushLog, 100);
}

function flushLog() {
  logTimer = 0;
  const body = $('log-table').tBodies[0];
  const rows = document.createDocumentFragment();
  for (const cells of logQueue.slice(-LOG_ROWS).reverse()) {
    const tr = document.createElement('tr');
    for (const value of cells) tr.append(Object.assign(document.createElement('td'), { textContent: value }));
    tr.cells[3].style.color = rgb(classColor(cells[3]));
    rows.append(tr);
  }
  logQueue = [];
  body.prepend(rows);
  while (body.rows.length > LOG_ROWS) body.lastElementChild.remove();
  $('log-count').textContent = stats.logRows ? `${stats.logRows} rows` : '';
}

// The "Download CSV" link: this connection's log ``name``, or (null) the most recent connection's.
export function setLog(name) {
  const link = $('download-csv');
  link.href = (name ? url(`api/logs/${encodeURIComponent(name)}`) : url('api/log.csv')).href;
  link.download = name || 'faces.csv';
  link.title = name ? `this connection's log: ${name}` : "the most recent connection's log";
}

export async function refreshLogName() {
  if (state.connection == null) return;
  try {
    const { logs } = await apiJson('api/logs');
    const mine = logs.filter((l) => l.connection === state.connection);
    if (mine.length) setLog(mine.reduce((a, b) => (String(b.started) >= String(a.started) ? b : a)).name);
  } catch (e) {
    setStatus(`log list: ${e.message}`, 'error');
  }
}
