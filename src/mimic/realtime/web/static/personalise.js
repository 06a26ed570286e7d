// The personalise panel: photos of your face per class, a fine-tuning job in the background, the before/after
// report, and one click to put the new model in the live view (the /api/captures and /api/finetune endpoints,
// docs/api.md). A reload finds the newest job again, running or finished.

import { api, apiJson, url } from './api.js';
import { grabJpeg } from './camera.js';
import { currentModelId, loadModels, onModelsChanged, switchModel } from './models.js';
import { $ } from './ui.js';

const THUMBS = 12; // the newest photos shown per class
const POLL_MS = 1000;
const SHOT_KEY = 'p'; // takes one photo now (outside text fields)
const NEW = '__new__';
let root = null; // the panel's element

const state = { captures: [], modelClasses: [], options: null, job: null, poll: 0, burst: null, picked: false };

const message = (text, kind = 'info') => {
  const el = $('p-message');
  el.textContent = text || '';
  el.dataset.kind = kind;
};
const pct = (v) => (v == null ? '–' : `${(100 * v).toFixed(1)}%`);
// The captures folder as "webcam/": its last part only, so no server path ever reaches the page.
const folderName = (folder) => (folder ? `${String(folder).split(/[\\/]/).filter(Boolean).pop()}/` : '');
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// ---- the class picker ----

function chosenClass() {
  const picked = $('p-class').value;
  return picked === NEW ? $('p-new-class').value.trim().toLowerCase() : picked;
}

// The model's classes, then the other classes with photos, then "new class…". Until the person picks one, the
// picker stands on the first class with photos, else the model's first class.
function fillClasses() {
  const select = $('p-class');
  const previous = select.value;
  const names = [...state.modelClasses];
  for (const c of state.captures) if (!names.includes(c.name)) names.push(c.name);
  select.innerHTML = names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join('')
    + `<option value="${NEW}">new class…</option>`;
  const start = state.captures.find((c) => c.count > 0)?.name ?? names[0] ?? NEW;
  select.value = state.picked && [...select.options].some((o) => o.value === previous) ? previous : start;
  $('p-new-class').hidden = select.value !== NEW;
}

// ---- captures ----

async function loadCaptures() {
  try {
    const r = await apiJson('api/captures');
    state.captures = r.classes;
    $('p-folder').textContent = folderName(r.folder);
    drawCaptures();
    fillClasses();
  } catch (e) {
    message(`photos: ${e.message}`, 'error');
  }
}

function drawCaptures() {
  const box = $('p-captures');
  if (!state.captures.length) {
    box.innerHTML = '<p class="dim">No photos yet: pick a class, make the face, take photos.</p>';
    return;
  }
  box.innerHTML = state.captures.map((c) => {
    const files = c.files.slice(-THUMBS).reverse();
    const thumbs = files.map((f) => `<button type="button" class="p-thumb" data-class="${esc(c.name)}"
        data-file="${esc(f)}" title="${esc(f)}: click to delete"><img alt="${esc(f)}" loading="lazy"
        src="${url(`api/captures/${encodeURIComponent(c.name)}/${encodeURIComponent(f)}`).href}"></button>`);
    return `<div class="p-class" data-class="${esc(c.name)}"><div><b>${esc(c.name)}</b>
      <span class="p-count" data-class="${esc(c.name)}">${c.count}</span> <span class="dim">photos</span></div>
      <div class="p-thumbs">${thumbs.join('')}</div></div>`;
  }).join('');
}

async function shoot(cls) {
  const blob = await grabJpeg();
  const form = new FormData();
  form.append('class', cls);
  form.append('file', blob, 'frame.jpg');
  const response = await api('api/captures', { method: 'POST', body: form });
  let body = {};
  try { body = await response.json(); } catch { /* the status says enough */ }
  if (response.ok) return { saved: true, body };
  if (body.face === false) return { saved: false, body };
  throw new Error(body.error || `${response.status} ${response.statusText}`);
}

async function takeOne(cls) {
  try {
    const r = await shoot(cls);
    message(r.saved ? `saved ${r.body.class}/${r.body.saved}` : 'no face found: that photo was not saved', r.saved
      ? 'info' : 'warn');
    return r.saved;
  } catch (e) {
    message(`photo: ${e.message}`, 'error');
    throw e;
  } finally {
    loadCaptures();
  }
}

function classOrComplain() {
  const cls = chosenClass();
  if (!cls) message('name the new class first', 'error');
  return cls;
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function burst() {
  if (state.burst) { state.burst.stop = true; return; }
  const cls = classOrComplain();
  if (!cls) return;
  const count = Math.max(1, Math.min(100, parseInt($('p-count').value, 10) || 1));
  const interval = Math.max(0.2, parseFloat($('p-interval').value) || 1);
  const run = state.burst = { stop: false };
  const button = $('p-burst');
  const countdown = $('p-countdown');
  button.textContent = 'Stop';
  let saved = 0;
  let missed = 0;
  try {
    countdown.hidden = false;
    for (let s = 3; s > 0 && !run.stop; s--) {
      countdown.textContent = `${cls}: ${s}`;
      await sleep(1000);
    }
    for (let i = 0; i < count && !run.stop; i++) {
      countdown.textContent = `${cls}: ${i + 1} / ${count}`;
      const started = performance.now();
      if (await takeOne(cls)) saved++; else missed++;
      await sleep(Math.max(0, interval * 1000 - (performance.now() - started)));
    }
    message(`${cls}: ${saved} photos saved${missed ? `, ${missed} without a face not saved` : ''}`);
  } catch {
    /* takeOne said what went wrong */
  } finally {
    countdown.hidden = true;
    button.textContent = 'Take photos';
    state.burst = null;
  }
}

// ---- fine-tuning ----

async function loadOptions() {
  const model = currentModelId();
  try {
    const o = state.options = await apiJson(`api/finetune/options${model ? `?model=${model}` : ''}`);
    if (!$('p-epochs').value) $('p-epochs').value = o.epochs.default;
    $('p-freeze').innerHTML = 'freeze ' + o.freeze.choices.map((m) => `<label><input type="checkbox"
      value="${esc(m)}" ${o.freeze.default.includes(m) ? 'checked' : ''}> ${esc(m)}</label>`).join(' ');
    const fer = $('p-fer2013');
    fer.disabled = !o.fer2013.found;
    fer.checked = o.fer2013.found;
    showMerge();
  } catch (e) {
    state.options = null;
    $('p-freeze').textContent = '';
    $('p-fer2013-note').textContent = e.message;
  }
}

function showMerge() {
  const o = state.options;
  if (!o) return;
  $('p-fer2013-note').textContent = !o.fer2013.found
    ? 'FER2013 is not on disk (ui.personalise.fer2013): your photos alone, the classes you did not photograph may be '
      + 'forgotten'
    : $('p-fer2013').checked ? 'on disk: the other classes keep learning from it'
      : 'off: your photos alone, the classes you did not photograph may be forgotten';
}

async function start() {
  const settings = {
    epochs: parseInt($('p-epochs').value, 10) || undefined,
    freeze: [...$('p-freeze').querySelectorAll('input:checked')].map((i) => i.value),
    fer2013: $('p-fer2013').checked,
  };
  if (currentModelId()) settings.model = currentModelId();
  $('p-start').disabled = true;
  try {
    const job = await apiJson('api/finetune', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(settings),
    });
    show(job);
  } catch (e) {
    message(`fine-tune: ${e.message}`, 'error');
    $('p-start').disabled = false;
  }
}

async function poll() {
  clearTimeout(state.poll);
  if (!state.job || state.job.state !== 'running') return;
  try {
    show(await apiJson(`api/finetune/${state.job.id}`));
  } catch (e) {
    $('p-state').textContent = `progress: ${e.message}`;
    state.poll = setTimeout(poll, 3 * POLL_MS);
  }
}

// What a job is doing, for its status line: "training, epoch 4 of 6" while the fourth epoch runs, counted from the
// finished epochs (``history``; progress.json's ``epoch`` still names the last finished one until its next write),
// "calibrating, 6 of 6 epochs done" after them, or the job's state.
export function jobStage(job) {
  if (job.state !== 'running') return job.state;
  const epochs = job.epochs || 0;
  const done = Math.max(job.history?.length || 0, job.epoch || 0);
  if (job.phase === 'training') return `training, epoch ${Math.min(done + 1, epochs)} of ${epochs}`;
  return done ? `${job.phase}, ${Math.min(done, epochs)} of ${epochs} epochs done` : job.phase;
}

function show(job) {
  state.job = job;
  const running = job.state === 'running';
  $('p-start').disabled = running;
  $('p-cancel').hidden = !running;
  $('p-progress').hidden = false;
  root.dataset.job = job.state;
  $('p-state').textContent = `job ${job.id}: ${jobStage(job)}${job.error ? ` (${job.error})` : ''}`;
  $('p-bar').value = job.steps ? job.step / job.steps : job.state === 'done' ? 1 : 0;
  $('p-epochs-table').tBodies[0].innerHTML = job.history.map((h) => `<tr><td>${h.epoch}</td>
    <td>${h.loss == null ? '–' : h.loss.toFixed(3)}</td><td>${pct(h.acc)}</td></tr>`).join('');
  drawReport(job);
  if (running) state.poll = setTimeout(poll, POLL_MS);
  else if (job.state === 'done') loadModels();
}

function matrix(title, result, classes, rows, cols) {
  if (!result) return '';
  const cells = rows.map((r) => {
    const row = result.confusion[r];
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return `<tr><th>${esc(classes[r])}</th>${cols.map((c) => {
      const v = row[c];
      const shade = (v / total).toFixed(2);
      return `<td class="${r === c ? 'p-hit' : ''}" style="--v:${shade}">${v || ''}</td>`;
    }).join('')}</tr>`;
  }).join('');
  return `<figure class="p-matrix"><figcaption>${title}: <b>${pct(result.accuracy)}</b></figcaption>
    <table><thead><tr><th></th>${cols.map((c) => `<th title="predicted ${esc(classes[c])}">
    ${esc(classes[c].slice(0, 3))}</th>`).join('')}</tr></thead><tbody>${cells}</tbody></table></figure>`;
}

function drawReport(job) {
  const box = $('p-report');
  const report = job.report;
  if (job.state !== 'done' || !report) {
    box.hidden = true;
    return;
  }
  const classes = report.classes;
  const before = report.before.held_out;
  const after = report.after.held_out;
  const rows = classes.map((_, i) => i).filter((i) => after.confusion[i].some((v) => v));
  const used = new Set(rows);
  for (const m of [before, after]) for (const r of rows) m.confusion[r].forEach((v, c) => { if (v) used.add(c); });
  const cols = [...used].sort((a, b) => a - b);
  const fer = report.before.fer2013 && report.after.fer2013
    ? `<p>FER2013 test (${report.after.fer2013.n} faces of ${esc(report.fer2013_classes.join(', '))}):
       ${pct(report.before.fer2013.accuracy)} → <b>${pct(report.after.fer2013.accuracy)}</b></p>`
    : '<p class="dim">FER2013 is not on disk: forgetting of the other classes is not measured.</p>';
  box.innerHTML = `<h3>Did it help?</h3>
    <p>Your ${after.n} held-out photos: ${pct(before.accuracy)} → <b>${pct(after.accuracy)}</b></p>
    ${report.note ? `<p class="p-note">${esc(report.note)}</p>` : ''}
    ${report.kept ? `<p class="dim">Kept: ${esc(report.kept)}.</p>` : ''}
    <div class="p-matrices">${matrix('before', before, classes, rows, cols)}
      ${matrix('after', after, classes, rows, cols)}</div>
    ${fer}
    <button id="p-use" type="button" ${job.model ? '' : 'disabled'}>Use the new model</button>
    <span class="dim">${esc(job.model?.name || '')}</span>`;
  box.hidden = false;
  $('p-use').addEventListener('click', async () => {
    try {
      await loadModels();
      await switchModel(job.model.id);
      message(`live view now uses ${job.model.name}`);
    } catch (e) {
      message(`switch: ${e.message}`, 'error');
    }
  });
}

async function findJob() {
  try {
    const { jobs } = await apiJson('api/finetune');
    if (jobs.length) show(jobs[0]);
  } catch (e) {
    $('p-state').textContent = `jobs: ${e.message}`;
  }
}

// Build the panel in ``root`` and start it: the photos so far, the newest job.
export function startPersonalise(element) {
  if (!element) return;
  root = element;
  root.classList.add('panel');
  root.innerHTML = `
    <div class="panel-head"><h2>Teach it your face</h2>
      <span class="dim p-folder" id="p-folder" title="the server's photo folder (ui.personalise.captures)"></span></div>
    <div class="p-row">
      <label>Class <select id="p-class"></select></label>
      <input id="p-new-class" placeholder="new class name" maxlength="32" hidden>
    </div>
    <div class="p-row">
      <label><input id="p-count" type="number" min="1" max="100" value="10"> photos</label>
      <label>every <input id="p-interval" type="number" min="0.2" max="10" step="0.1" value="1"> s</label>
      <button id="p-burst" type="button">Take photos</button>
      <button id="p-shot" type="button" title="or press ${SHOT_KEY.toUpperCase()}">One photo (${SHOT_KEY.toUpperCase()})</button>
    </div>
    <div id="p-countdown" class="p-countdown" hidden></div>
    <div id="p-message" class="p-message" role="status" aria-live="polite"></div>
    <div id="p-captures"></div>
    <h3>Fine-tune</h3>
    <div class="p-row">
      <label>Epochs <input id="p-epochs" type="number" min="1" max="100"></label>
      <span id="p-freeze" class="p-freeze"></span>
    </div>
    <div class="p-row">
      <label><input id="p-fer2013" type="checkbox"> merge FER2013</label>
      <span id="p-fer2013-note" class="dim"></span>
    </div>
    <div class="p-row">
      <button id="p-start" type="button">Fine-tune</button>
      <button id="p-cancel" type="button" hidden>Cancel</button>
      <span id="p-state" class="dim"></span>
    </div>
    <div id="p-progress" hidden>
      <progress id="p-bar" max="1" value="0"></progress>
      <table id="p-epochs-table" class="p-table"><thead><tr><th>epoch</th><th>loss</th><th>val acc</th></tr></thead>
        <tbody></tbody></table>
    </div>
    <div id="p-report" hidden></div>
  `;

  $('p-class').addEventListener('change', () => {
    state.picked = true;
    $('p-new-class').hidden = $('p-class').value !== NEW;
    if ($('p-class').value === NEW) $('p-new-class').focus();
  });
  $('p-captures').addEventListener('click', async (ev) => {
    const thumb = ev.target.closest('.p-thumb');
    if (!thumb) return;
    const { class: cls, file } = thumb.dataset;
    try {
      await apiJson(`api/captures/${encodeURIComponent(cls)}/${encodeURIComponent(file)}`, { method: 'DELETE' });
      message(`deleted ${cls}/${file}`);
    } catch (e) {
      message(`delete: ${e.message}`, 'error');
    }
    loadCaptures();
  });
  $('p-shot').addEventListener('click', () => { const c = classOrComplain(); if (c) takeOne(c).catch(() => {}); });
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== SHOT_KEY || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target.closest?.('input, select, textarea')) return;
    const c = classOrComplain();
    if (c) takeOne(c).catch(() => {});
  });
  $('p-burst').addEventListener('click', burst);
  $('p-fer2013').addEventListener('change', showMerge);
  $('p-start').addEventListener('click', start);
  $('p-cancel').addEventListener('click', async () => {
    if (!state.job) return;
    try {
      show(await apiJson(`api/finetune/${state.job.id}`, { method: 'DELETE' }));
    } catch (e) {
      message(`cancel: ${e.message}`, 'error');
    }
  });

  onModelsChanged(({ classes, current }) => {
    state.modelClasses = classes;
    fillClasses();
    if (current !== state.optionsModel) {
      state.optionsModel = current;
      loadOptions();
    }
  });
  loadCaptures();
  findJob();
}
