// The live view's two streams: the browser's camera frames to WS /ws/live (at most MAX_IN_FLIGHT unanswered, each
// answer drawn over the frame it belongs to), or the server's own source from WS /ws/source (an annotated JPEG, then
// its JSON). Every answer goes to the stage, the side panels, the chart, the log table and the reactions.

import { wsUrl } from './api.js';
import { video } from './camera.js';
import { setModel } from './models.js';
import { addLogRows, setClasses, setLog, showFace } from './panels.js';
import { react } from './reactions.js';
import { connectionStart, latencies, state, stats } from './state.js';
import { $, setStatus } from './ui.js';
import { drawChart, drawFrame, remember, selectedFace } from './view.js';

const MAX_IN_FLIGHT = 2; // frames sent and not yet answered
const MAX_WIDTH = 640; // larger camera frames are scaled down before sending
const LATENCY_N = 30; // round trips in the median

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

export function connectLive() {
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
export function watchFrames() {
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

// ---- the server's own source -> WS /ws/source (annotated JPEG, then its JSON) ----

export function connectSource() {
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

