// mimic's live page: the browser's camera (or the server's own stream) through WS /ws/live, each answer drawn over
// the frame it belongs to, the selected face's bars and 10 s chart, reactions, the log table and the model picker.
// Plain JavaScript, no build step. The API is described in README.md ("Web page").
//
// For other panels (personalise.js) and tests it exposes:
//   window.mimic = {token, connectionId, currentModelId, classes, models, grabJpeg(), api(path, opts), apiJson(path,
//                   opts), url(path), switchModel(id), refreshModels(), onModelsChanged(cb), setStatus(text, kind),
//                   classColor(name)}
//     onModelsChanged(cb): cb({models, current, classes}) now (when the list is known) and whenever the list is
//     reloaded or the model switches; returns a function that unsubscribes.
//   window.mimicStats = {sent, answers, drawn, skipped, errors, fps, latencyMs, faces, reactions, sounds,
//                        lastReaction, logRows, lastResult, lastDrawn, ms: {grab, jpeg, answer} (moving averages of
//                        copying a camera frame, encoding it, handling an answer),
//                        cameraFrames (new frames the video element presented), unsent (camera frames passed over
//                        while MAX_IN_FLIGHT frames waited for their answers or one was being encoded)}
'use strict';

(() => {
  const MAX_IN_FLIGHT = 2; // frames sent and not yet answered
  const MAX_WIDTH = 640; // larger camera frames are scaled down before sending
  const CHART_S = 10;
  const LOG_ROWS = 20;
  const LATENCY_N = 30; // round trips in the median
  const COLORS = { // the window app's class colours (mimic.realtime.overlay), as RGB
    angry: [220, 40, 40], disgust: [40, 150, 40], fear: [150, 60, 160], happy: [250, 200, 30],
    sad: [40, 120, 200], surprise: [255, 140, 30], neutral: [190, 190, 190], contempt: [40, 110, 120],
  };

  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get('token');
  const base = new URL('.', location.href);
  const video = $('video');
  const view = $('view');
  const viewCtx = view.getContext('2d');

  const state = {
    info: null, classes: [], model: null, models: null, connection: null, selected: null,
    muted: localStorage.getItem('mimic.muted') === '1', soundBlocked: false, quality: 0.8,
    history: new Map(), // face id -> [{t, v: smoothed probabilities in class order}]
  };
  const stats = window.mimicStats = {
    sent: 0, answers: 0, drawn: 0, skipped: 0, errors: 0, fps: 0, latencyMs: null, faces: 0, reactions: 0,
    sounds: 0, lastReaction: null, logRows: 0, lastResult: null, lastDrawn: null, cameraFrames: 0, unsent: 0,
    ms: { grab: 0, jpeg: 0, answer: 0 },
  };
  const drawnTimes = [];
  const latencies = [];
  const modelListeners = new Set();

  // ---- requests (every one carries the page's ?token=) ----

  function url(path) {
    const u = new URL(String(path).replace(/^\/+/, ''), base);
    if (token) u.searchParams.set('token', token);
    return u;
  }

  function wsUrl(path) {
    const u = url(path);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.href;
  }

  const api = (path, opts) => fetch(url(path), opts);

  async function apiJson(path, opts) {
    const response = await api(path, opts);
    let body = null;
    try { body = await response.json(); } catch { /* not JSON: the status says enough */ }
    if (!response.ok) throw new Error(body?.error || `${response.status} ${response.statusText} (${path})`);
    return body;
  }

  let statusTimer = 0;
  function setStatus(text, kind = 'info') {
    const el = $('status');
    el.textContent = text || '';
    el.dataset.kind = kind;
    clearTimeout(statusTimer);
    if (text && kind === 'info') statusTimer = setTimeout(() => { el.textContent = ''; }, 6000);
  }

  // ---- classes, bars, log table ----

  function classColor(name) {
    if (COLORS[name]) return COLORS[name];
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return [60 + (h % 180), 60 + ((h >>> 8) % 180), 60 + ((h >>> 16) % 180)];
  }
  const rgb = (c, a = 1) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;

  let barEls = [];
  function setClasses(classes) {
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

  const valueOf = (face, name) => face.smoothed?.[name] ?? face.probs?.[name] ?? 0;

  function showFace(face) {
    $('face-id').textContent = face ? `#${face.id}` : '';
    $('face-conf').textContent = face ? `${Math.round(face.confidence * 100)}%` : '';
    const label = $('face-label');
    label.textContent = face ? face.label : 'no face';
    label.style.color = face ? rgb(classColor(face.label)) : '';
    for (const { name, row, bar, pct } of barEls) {
      const v = face ? valueOf(face, name) : 0;
      bar.style.width = `${(v * 100).toFixed(1)}%`;
      bar.dataset.value = String(v);
      pct.textContent = face ? `${Math.round(v * 100)}%` : '–';
      row.classList.toggle('top', !!face && name === face.label);
    }
  }

  const connectionStart = { t: performance.now() };
  // rows wait here and reach the table at most ten times a second (newest first)
  let logQueue = [];
  let logTimer = 0;
  function addLogRows(result) {
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

  function setLog(name) {
    const link = $('download-csv');
    link.href = (name ? url(`api/logs/${encodeURIComponent(name)}`) : url('api/log.csv')).href;
    link.download = name || 'faces.csv';
    link.title = name ? `this connection's log: ${name}` : "the most recent connection's log";
  }

  async function refreshLogName() {
    if (state.connection == null) return;
    try {
      const { logs } = await apiJson('api/logs');
      const mine = logs.filter((l) => l.connection === state.connection);
      if (mine.length) setLog(mine.reduce((a, b) => (String(b.started) >= String(a.started) ? b : a)).name);
    } catch (e) {
      setStatus(`log list: ${e.message}`, 'error');
    }
  }

  // ---- models ----

  function notifyModels() {
    if (!state.models) return;
    const event = { models: state.models.slice(), current: state.model?.id ?? null, classes: state.classes.slice() };
    for (const cb of modelListeners) {
      try { cb(event); } catch (e) { console.error(e); }
    }
  }

  function setModel(entry, classes) {
    if (!entry) return;
    state.model = entry;
    setClasses(classes || entry.classes);
    fillModelPicker();
    notifyModels();
  }

  function fillModelPicker() {
    const picker = $('model-picker');
    const models = (state.models || []).slice();
    if (state.model && !models.some((m) => m.id === state.model.id)) models.unshift(state.model);
    if (!models.length) return;
    picker.replaceChildren(...models.map((m) => {
      const acc = m.accuracy == null ? '' : ` · ${(m.accuracy * 100).toFixed(1)}%`;
      const option = new Option(`${m.name}${acc}${m.kind === 'bundled' ? ' (bundled)' : ''}`, m.id);
      option.title = m.path_hint || '';
      return option;
    }));
    picker.value = state.model?.id ?? '';
    picker.disabled = !state.models;
  }

  let modelsKey = '';
  async function loadModels() {
    try {
      const r = await apiJson('api/models');
      const key = JSON.stringify(r.models);
      if (key === modelsKey) return state.models;
      modelsKey = key;
      state.models = r.models;
      fillModelPicker();
      notifyModels();
    } catch (e) {
      setStatus(`model list: ${e.message}`, 'error');
    }
    return state.models;
  }

  async function switchModel(id) {
    const body = { id };
    if (state.connection != null) body.connection = state.connection;
    const r = await apiJson('api/model', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    setModel(r.model, r.classes);
    state.history.clear();
    if (r.log) setLog(r.log);
    else await refreshLogName();
    setStatus(`model: ${r.model.name}`);
    return r;
  }

  function onModelsChanged(cb) {
    modelListeners.add(cb);
    if (state.models) {
      try { cb({ models: state.models.slice(), current: state.model?.id ?? null, classes: state.classes.slice() }); }
      catch (e) { console.error(e); }
    }
    return () => modelListeners.delete(cb);
  }

  $('model-picker').addEventListener('change', async (ev) => {
    const picker = ev.target;
    const previous = state.model?.id;
    picker.disabled = true;
    try {
      await switchModel(picker.value);
    } catch (e) {
      setStatus(`switching model: ${e.message}`, 'error');
      picker.value = previous ?? '';
    } finally {
      picker.disabled = false;
    }
  });
  $('model-picker').addEventListener('focus', loadModels); // the server rescans outputs/ on each request

  // ---- drawing ----

  function drawFace(ctx, face, selected) {
    const [x, y, w, h] = face.box;
    const color = rgb(classColor(face.label));
    const lw = Math.max(3, Math.round(view.width / 213));
    ctx.lineWidth = selected ? lw + 2 : lw;
    ctx.strokeStyle = color;
    ctx.strokeRect(x, y, w, h);
    const size = Math.max(14, Math.round(view.width / 40));
    ctx.font = `600 ${size}px system-ui, sans-serif`;
    const text = `#${face.id} ${face.label} ${Math.round(face.confidence * 100)}%`;
    const tw = ctx.measureText(text).width + size * 0.6;
    const th = Math.round(size * 1.35);
    let ty = y - lw - th;
    if (ty < 0) ty = y + lw; // no room above: inside the box, below its edge
    ctx.fillStyle = 'rgba(10, 12, 16, 0.72)';
    ctx.fillRect(x - lw / 2, ty, tw, th);
    ctx.fillStyle = color;
    ctx.fillText(text, x - lw / 2 + size * 0.3, ty + th * 0.75);
  }

  function drawFrame(image, result, annotated) {
    if (view.width !== image.width || view.height !== image.height) {
      view.width = image.width;
      view.height = image.height;
    }
    viewCtx.drawImage(image, 0, 0);
    for (const face of result.faces) {
      if (!annotated) drawFace(viewCtx, face, face.id === state.selected && result.faces.length > 1);
      else if (face.id === state.selected && result.faces.length > 1) { // the server drew the boxes: mark the choice
        const [x, y, w, h] = face.box;
        viewCtx.setLineDash([8, 6]);
        viewCtx.lineWidth = 2;
        viewCtx.strokeStyle = '#fff';
        viewCtx.strokeRect(x - 6, y - 6, w + 12, h + 12);
        viewCtx.setLineDash([]);
      }
    }
    stats.drawn += 1;
    stats.lastDrawn = result;
    drawnTimes.push(performance.now());
    if (stats.drawn === 1) $('stage').classList.add('live');
  }

  function chartSize(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(canvas.clientWidth * dpr);
    const h = Math.round(canvas.clientHeight * dpr);
    if (w && h && (canvas.width !== w || canvas.height !== h)) {
      canvas.width = w;
      canvas.height = h;
    }
    return dpr;
  }

  let chartDrawn = 0;
  function drawChart(force = false) {
    const now = performance.now();
    if (!force && now - chartDrawn < 80) return;
    chartDrawn = now;
    const canvas = $('chart');
    const dpr = chartSize(canvas);
    const ctx = canvas.getContext('2d');
    const { width: W, height: H } = canvas;
    const left = 26 * dpr, bottom = 16 * dpr, top = 6 * dpr, right = 4 * dpr;
    const pw = W - left - right, ph = H - top - bottom;
    ctx.clearRect(0, 0, W, H);
    ctx.font = `${10 * dpr}px system-ui, sans-serif`;
    ctx.fillStyle = '#7d8794';
    ctx.strokeStyle = '#2a313a';
    ctx.lineWidth = dpr;
    for (const v of [0, 0.5, 1]) {
      const y = top + (1 - v) * ph;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(W - right, y);
      ctx.stroke();
      ctx.fillText(String(v), 4 * dpr, y + 3 * dpr);
    }
    ctx.fillText(`-${CHART_S} s`, left, H - 3 * dpr);
    ctx.fillText('now', W - right - 20 * dpr, H - 3 * dpr);
    const points = state.history.get(state.selected);
    if (!points || points.length < 2) return;
    const t1 = now / 1000;
    const last = points[points.length - 1];
    const top1 = last.v.indexOf(Math.max(...last.v));
    state.classes.forEach((name, i) => {
      ctx.beginPath();
      points.forEach((p, k) => {
        const x = left + pw * (1 - (t1 - p.t) / CHART_S);
        const y = top + (1 - p.v[i]) * ph;
        if (k) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
      });
      ctx.strokeStyle = rgb(classColor(name), i === top1 ? 1 : 0.75);
      ctx.lineWidth = (i === top1 ? 2.5 : 1.25) * dpr;
      ctx.stroke();
    });
  }

  function remember(result) {
    const t = performance.now() / 1000;
    for (const face of result.faces) {
      let points = state.history.get(face.id);
      if (!points) state.history.set(face.id, (points = []));
      points.push({ t, v: state.classes.map((c) => valueOf(face, c)) });
      while (points.length && t - points[0].t > CHART_S) points.shift();
    }
    for (const [id, points] of state.history) {
      if (!points.length || t - points[points.length - 1].t > CHART_S) state.history.delete(id);
    }
  }

  // the face to follow: the one clicked while it stays in view, else the largest
  function selectedFace(faces) {
    let face = faces.find((f) => f.id === state.selected);
    if (!face && faces.length) {
      face = faces.reduce((a, b) => (b.box[2] * b.box[3] > a.box[2] * a.box[3] ? b : a));
      state.selected = face.id;
    }
    return face || null;
  }

  view.addEventListener('click', (ev) => {
    const faces = stats.lastDrawn?.faces || [];
    if (!faces.length) return;
    const rect = view.getBoundingClientRect(); // the canvas is letterboxed inside its box (object-fit: contain)
    const scale = Math.min(rect.width / view.width, rect.height / view.height);
    const x = (ev.clientX - rect.left - (rect.width - view.width * scale) / 2) / scale;
    const y = (ev.clientY - rect.top - (rect.height - view.height * scale) / 2) / scale;
    const hit = faces.find(({ box: [bx, by, bw, bh] }) => x >= bx && x <= bx + bw && y >= by && y <= by + bh);
    if (hit) {
      state.selected = hit.id;
      showFace(hit);
      drawChart(true);
    }
  });

  // ---- reactions ----

  const sounds = new Map();
  let reactionTimer = 0;
  function react(label) {
    stats.reactions += 1;
    stats.lastReaction = label;
    const figure = $('reaction');
    const img = $('reaction-image');
    img.onerror = () => { figure.hidden = true; };
    img.src = url(`api/reactions/${encodeURIComponent(label)}/image`).href;
    img.alt = label;
    figure.dataset.label = label;
    figure.hidden = false;
    figure.classList.remove('pop');
    void figure.offsetWidth; // restart the pop-in animation
    figure.classList.add('pop');
    clearTimeout(reactionTimer);
    reactionTimer = setTimeout(() => { figure.hidden = true; }, 1000 * (state.info?.reactions?.popup_s ?? 1.5));
    playSound(label);
  }

  function playSound(label) {
    const r = state.info?.reactions;
    if (!r?.sound || state.muted) return;
    let audio = sounds.get(label);
    if (!audio) sounds.set(label, (audio = new Audio(url(`api/reactions/${encodeURIComponent(label)}/sound`).href)));
    audio.volume = Math.min(1, Math.max(0, r.volume ?? 0.8));
    audio.currentTime = 0;
    audio.play().then(() => { stats.sounds += 1; }).catch((e) => {
      if (e.name === 'NotAllowedError' && !state.soundBlocked) {
        state.soundBlocked = true;
        setStatus('Click anywhere on the page to let it play the reaction sounds.');
      }
    });
  }

  function showMute() {
    const button = $('mute');
    button.textContent = state.muted ? 'Sound off' : 'Sound on';
    button.setAttribute('aria-pressed', String(state.muted));
  }
  $('mute').addEventListener('click', () => {
    state.muted = !state.muted;
    localStorage.setItem('mimic.muted', state.muted ? '1' : '0');
    showMute();
  });

  // ---- answers ----

  let panelShown = 0;
  let panelFace = null;
  const average = (key, ms) => { stats.ms[key] = stats.ms[key] ? 0.9 * stats.ms[key] + 0.1 * ms : ms; };

  function handleResult(result, image, annotated) {
    const t0 = performance.now();
    stats.lastResult = result;
    if (stats.faces !== result.faces.length) $('faces').textContent = String(result.faces.length);
    stats.faces = result.faces.length;
    if (result.faces.length) setClasses(Object.keys(result.faces[0].probs));
    const face = selectedFace(result.faces);
    if (image) drawFrame(image, result, annotated);
    remember(result);
    if (t0 - panelShown > 60 || (face?.id ?? null) !== panelFace) { // the side panel at most ~15 times a second
      showFace(face);
      panelShown = t0;
      panelFace = face?.id ?? null;
    }
    drawChart();
    addLogRows(result);
    for (const f of result.faces) if (f.reaction) react(f.reaction);
    average('answer', performance.now() - t0);
  }

  function onHello(hello) {
    state.connection = hello.connection ?? null;
    if (hello.model) setModel(hello.model, hello.classes);
    setLog(hello.log);
    connectionStart.t = performance.now();
  }

  function onMessage(msg) {
    if (msg.hello) onHello(msg.hello);
    else if (msg.model && !('frame' in msg)) setModel(msg.model, msg.classes);
    else if (msg.error && !('frame' in msg)) setStatus(msg.error, 'error');
  }

  // ---- the browser's camera -> WS /ws/live ----

  let ws = null;
  let pending = []; // frames sent and not answered yet, in order: {seq, slot, sent}
  let seq = 0;
  let busy = false;
  let frameSerial = 0; // counts the camera's new frames
  let sentSerial = -1;
  let retry = 1000;

  // Each frame in flight keeps its picture in a canvas of its own, drawn with its answer. The canvases live in CPU
  // memory (willReadFrequently), where the JPEG encoder reads them without a copy back from the GPU.
  const slots = Array.from({ length: MAX_IN_FLIGHT + 1 }, () => {
    const canvas = document.createElement('canvas');
    return { canvas, ctx: canvas.getContext('2d', { willReadFrequently: true }), busy: false };
  });

  function release(entry) {
    if (entry) entry.slot.busy = false;
  }

  function dropPending() {
    pending.forEach(release);
    pending = [];
  }

  function connectLive() {
    const socket = new WebSocket(wsUrl('ws/live'));
    ws = socket;
    seq = 0;
    dropPending();
    socket.onopen = () => {
      retry = 1000;
      if ($('status').dataset.kind === 'error') setStatus('connected');
      pump();
    };
    socket.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (!('frame' in msg)) {
        onMessage(msg);
        return;
      }
      while (pending.length && pending[0].seq < msg.frame) release(pending.shift());
      const entry = pending[0]?.seq === msg.frame ? pending.shift() : null;
      stats.answers += 1;
      if (msg.skipped) {
        stats.skipped += 1;
      } else if (msg.error) {
        stats.errors += 1;
        setStatus(`frame ${msg.frame}: ${msg.error}`, 'error');
      } else {
        if (entry) {
          latencies.push(performance.now() - entry.sent);
          if (latencies.length > LATENCY_N) latencies.shift();
        }
        handleResult(msg, entry?.slot.canvas, false);
      }
      release(entry);
      pump();
    };
    socket.onclose = (ev) => {
      if (ws !== socket) return;
      dropPending();
      const why = ev.reason ? `: ${ev.reason}` : ev.code === 1008 ? ': refused (token or origin)' : '';
      setStatus(`connection to the server lost${why}; retrying…`, 'error');
      setTimeout(connectLive, retry);
      retry = Math.min(10000, retry * 2);
    };
  }

  function sendSize() {
    const w = video.videoWidth, h = video.videoHeight;
    if (w <= MAX_WIDTH) return [w, h];
    return [MAX_WIDTH, Math.round((h * MAX_WIDTH) / w)];
  }

  async function pump() {
    const socket = ws;
    if (busy || !socket || socket.readyState !== WebSocket.OPEN || pending.length >= MAX_IN_FLIGHT) return;
    if (video.readyState < 2 || !video.videoWidth || frameSerial === sentSerial) return;
    const slot = slots.find((s) => !s.busy);
    if (!slot) return;
    busy = slot.busy = true;
    sentSerial = frameSerial;
    let sent = false;
    const t0 = performance.now();
    try {
      const [w, h] = sendSize();
      if (slot.canvas.width !== w || slot.canvas.height !== h) {
        slot.canvas.width = w;
        slot.canvas.height = h;
      }
      slot.ctx.drawImage(video, 0, 0, w, h);
      const t1 = performance.now();
      const blob = await new Promise((resolve) => slot.canvas.toBlob(resolve, 'image/jpeg', state.quality));
      average('grab', t1 - t0);
      average('jpeg', performance.now() - t1);
      const limit = state.info?.max_frame_bytes;
      if (blob && limit && blob.size > limit) {
        state.quality = Math.max(0.3, state.quality - 0.1);
        setStatus(`frames over the server's ${limit} bytes: JPEG quality lowered to ${state.quality.toFixed(1)}`);
      } else if (blob && ws === socket && socket.readyState === WebSocket.OPEN) {
        pending.push({ seq: seq++, slot, sent: performance.now() });
        sent = true;
        socket.send(blob);
        stats.sent += 1;
      }
    } catch (e) {
      setStatus(`capturing a frame: ${e.message}`, 'error');
    } finally {
      if (!sent) slot.busy = false;
      busy = false;
    }
    pump();
  }

  // A new camera frame: from requestVideoFrameCallback, or every 33 ms when it is missing or stalls (a browser may
  // stop presenting a video that is covered or out of view).
  function watchFrames() {
    let lastCallback = 0;
    const tick = () => {
      if (frameSerial !== sentSerial && stats.sent) stats.unsent += 1; // the previous frame was never sent
      frameSerial += 1;
      pump();
    };
    if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
      const next = () => {
        lastCallback = performance.now();
        stats.cameraFrames += 1;
        tick();
        video.requestVideoFrameCallback(next);
      };
      video.requestVideoFrameCallback(next);
    }
    setInterval(() => { if (performance.now() - lastCallback > 100) tick(); }, 1000 / 30);
  }

  function cameraError(e) {
    if (e.name === 'NotAllowedError') return 'The camera was not allowed: allow it in the address bar, then reload.';
    if (e.name === 'NotFoundError' || e.name === 'OverconstrainedError') return 'No camera found.';
    if (e.name === 'NotReadableError') return 'The camera is in use by another program.';
    return `The camera did not start: ${e.message}`;
  }

  let stream = null;
  async function startCamera(deviceId) {
    if (!navigator.mediaDevices?.getUserMedia) {
      const text = 'The browser opens the camera only on localhost or over HTTPS: open this page as '
        + 'http://127.0.0.1:<port>/ (an SSH tunnel works), or start the server with ui.ssl_certfile and ui.ssl_keyfile.';
      setStatus(text, 'error');
      $('placeholder').textContent = 'No camera: this page is neither on localhost nor on HTTPS.';
      return;
    }
    for (const track of stream?.getTracks() || []) track.stop();
    const size = { width: { ideal: 640 }, height: { ideal: 480 } };
    const constraints = (id) => ({ audio: false, video: id ? { ...size, deviceId: { exact: id } } : size });
    try {
      try {
        stream = await navigator.mediaDevices.getUserMedia(constraints(deviceId));
      } catch (e) {
        if (!deviceId || (e.name !== 'OverconstrainedError' && e.name !== 'NotFoundError')) throw e;
        stream = await navigator.mediaDevices.getUserMedia(constraints(null)); // the remembered camera is gone
      }
    } catch (e) {
      setStatus(cameraError(e), 'error');
      $('placeholder').textContent = 'No camera.';
      return;
    }
    video.srcObject = stream;
    video.play().catch(() => {});
    $('placeholder').textContent = 'Waiting for the first answer…';
    await listCameras();
  }

  async function listCameras() {
    const cameras = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
    const current = stream?.getVideoTracks()[0]?.getSettings().deviceId;
    const picker = $('camera-picker');
    picker.replaceChildren(...cameras.map((c, i) => new Option(c.label || `camera ${i + 1}`, c.deviceId)));
    if (current) picker.value = current;
    $('camera-choice').hidden = cameras.length < 2;
  }

  navigator.mediaDevices?.addEventListener?.('devicechange', () => { if (stream) listCameras(); });
  $('camera-picker').addEventListener('change', (ev) => {
    localStorage.setItem('mimic.camera', ev.target.value);
    startCamera(ev.target.value);
  });

  async function grabJpeg(quality = 0.92) {
    if (state.info?.source === 'server') throw new Error('this page shows the server\'s video; no camera here');
    if (video.readyState < 2 || !video.videoWidth) throw new Error('the camera is not running');
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', quality));
    if (!blob) throw new Error('could not encode the frame');
    return blob;
  }

  // ---- the server's own source -> WS /ws/source (annotated JPEG, then its JSON) ----

  function connectSource() {
    const socket = new WebSocket(wsUrl('ws/source'));
    socket.binaryType = 'blob';
    ws = socket;
    let image = null;
    let decoding = 0;
    let ended = false;
    socket.onopen = () => { retry = 1000; };
    socket.onmessage = (ev) => {
      if (typeof ev.data !== 'string') {
        image = ev.data;
        return;
      }
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.end) {
        ended = true;
        setStatus('The video has ended.');
        return;
      }
      if (!('frame' in msg)) {
        onMessage(msg);
        return;
      }
      if (msg.skipped || msg.error) return;
      stats.answers += 1;
      const blob = image;
      image = null;
      if (!blob || decoding > 1) { // drawing cannot keep up: show the numbers, skip the picture
        handleResult(msg, null, true);
        return;
      }
      decoding += 1;
      createImageBitmap(blob)
        .then((bitmap) => { handleResult(msg, bitmap, true); bitmap.close(); })
        .catch((e) => setStatus(`a frame from the server did not decode: ${e.message}`, 'error'))
        .finally(() => { decoding -= 1; });
    };
    socket.onclose = (ev) => {
      if (ended || ws !== socket) return;
      setStatus(`connection to the server lost${ev.reason ? `: ${ev.reason}` : ''}; retrying…`, 'error');
      setTimeout(connectSource, retry);
      retry = Math.min(10000, retry * 2);
    };
  }

  // ---- start ----

  setInterval(() => {
    const now = performance.now();
    while (drawnTimes.length && now - drawnTimes[0] > 2000) drawnTimes.shift();
    const n = drawnTimes.length;
    stats.fps = n > 1 ? ((n - 1) * 1000) / (drawnTimes[n - 1] - drawnTimes[0]) : 0;
    $('fps').textContent = stats.fps ? stats.fps.toFixed(0) : '–';
    if (latencies.length) {
      const sorted = latencies.slice().sort((a, b) => a - b);
      stats.latencyMs = sorted[Math.floor(sorted.length / 2)];
      $('latency').textContent = stats.latencyMs.toFixed(0);
    }
  }, 250);
  window.addEventListener('resize', () => drawChart(true));

  async function boot() {
    let info;
    try {
      info = await apiJson('api/info');
    } catch (e) {
      const hint = token ? '' : ' If the server printed an address with ?token=, open that one.';
      setStatus(`Cannot reach the server: ${e.message}.${hint}`, 'error');
      setTimeout(boot, 3000);
      return;
    }
    state.info = info;
    if (info.jpeg_quality) state.quality = Math.min(1, Math.max(0.3, info.jpeg_quality / 100));
    setModel(info.model, info.classes);
    $('mute').hidden = !(info.reactions?.enabled && info.reactions?.sound);
    showMute();
    drawChart(true);
    loadModels();
    setLog(null);
    if (info.source === 'server') {
      video.hidden = true;
      $('placeholder').textContent = 'Waiting for the server\'s video…';
      connectSource();
    } else {
      watchFrames();
      connectLive();
      await startCamera(localStorage.getItem('mimic.camera'));
    }
  }

  window.mimic = {
    get token() { return token; },
    get connectionId() { return state.connection; },
    get currentModelId() { return state.model?.id ?? null; },
    get classes() { return state.classes.slice(); },
    get models() { return state.models ? state.models.slice() : null; },
    grabJpeg, api, apiJson, url: (path) => url(path).href, switchModel, refreshModels: loadModels, onModelsChanged,
    setStatus, classColor,
  };

  showFace(null);
  document.addEventListener('pointerdown', () => { state.soundBlocked = false; }, { once: true });
  boot();
})();
