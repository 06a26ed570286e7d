// mimic's live page: the browser's camera (or the server's own stream) through the server's pipeline, each answer
// drawn over the frame it belongs to, the selected face's bars and 10 s chart, reactions, the log table, the model
// picker and the personalise panel. ES modules that import one another, no build step; docs/api.md describes the
// API they call.
//
// For tests (and the browser's console) the page exposes window.mimicStats (state.js) and
//   window.mimic = {token, connectionId, currentModelId, classes, models, grabJpeg(), api(path, opts),
//                   apiJson(path, opts), url(path), switchModel(id), refreshModels(), onModelsChanged(cb),
//                   setStatus(text, kind), classColor(name)}
// The modules themselves never read either.

import { api, apiJson, token, url } from './api.js';
import { grabJpeg, startCamera, video } from './camera.js';
import { connectLive, connectSource, watchFrames } from './live.js';
import { loadModels, onModelsChanged, setModel, switchModel } from './models.js';
import { setLog, showFace } from './panels.js';
import { startPersonalise } from './personalise.js';
import { showMute } from './reactions.js';
import { drawnTimes, latencies, state, stats } from './state.js';
import { $, classColor, setStatus } from './ui.js';
import { drawChart } from './view.js';

// frames/s over the last 2 s and the median round trip, four times a second
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
startPersonalise($('personalise'));
