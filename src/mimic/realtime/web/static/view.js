// The stage and the chart: each answer drawn over the frame it belongs to, the face to follow (click one), and the
// followed face's smoothed probabilities over the last 10 s.

import { showFace, valueOf } from './panels.js';
import { drawnTimes, state, stats } from './state.js';
import { $, classColor, rgb } from './ui.js';

const CHART_S = 10;
const view = $('view');
const viewCtx = view.getContext('2d');

const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

// Where each face's label goes in a frame of ``width`` x ``height``; ``items`` are {box: [x, y, w, h], w, h, gap}
// (the label's size and its distance from the box). A label sits above its box, else below it, else inside its top
// edge, whichever is the first to fit in the frame and not cover a label placed before it; when none is free it slides
// up or down past the labels in its way to the nearest free spot in the frame, and failing that stays where it would
// have been. It never leaves the frame. Returns [{x, y, w, h}] in the items' order.
export function placeLabels(items, width, height) {
  const placed = [];
  const free = (r) => !placed.some((p) => overlaps(r, p));
  const fits = (r) => r.y >= 0 && r.y + r.h <= height;
  for (const { box: [bx, by, bw, bh], w, h, gap } of items) {
    const at = (y) => ({ x: Math.max(0, Math.min(bx - gap / 2, width - w)), y, w, h });
    const spots = [by - gap - h, by + bh + gap, by + gap].map(at).filter(fits);
    const first = spots[0] || at(Math.max(0, Math.min(by + gap, height - h)));
    const slide = (down) => { // past each label in the way until free; null at the frame's edge
      for (let r = first; ;) {
        const hit = placed.find((p) => overlaps(r, p));
        if (!hit) return r;
        r = at(down ? hit.y + hit.h : hit.y - h);
        if (!fits(r)) return null;
      }
    };
    const nearest = () => [slide(true), slide(false)].filter(Boolean)
      .sort((a, b) => Math.abs(a.y - first.y) - Math.abs(b.y - first.y))[0];
    placed.push(spots.find(free) || nearest() || first);
  }
  return placed;
}

// Every face's box, then every label where placeLabels puts it (so no box is drawn over a label).
function drawFaces(ctx, faces) {
  const lw = Math.max(3, Math.round(view.width / 213));
  const size = Math.max(14, Math.round(view.width / 40));
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  const th = Math.round(size * 1.35);
  const texts = faces.map((f) => `#${f.id} ${f.label} ${Math.round(f.confidence * 100)}%`);
  const spots = placeLabels(faces.map((f, i) => ({
    box: f.box, w: ctx.measureText(texts[i]).width + size * 0.6, h: th, gap: lw,
  })), view.width, view.height);
  const selected = (f) => f.id === state.selected && faces.length > 1;
  faces.forEach((f) => {
    ctx.lineWidth = selected(f) ? lw + 2 : lw;
    ctx.strokeStyle = rgb(classColor(f.label));
    ctx.strokeRect(...f.box);
  });
  faces.forEach((f, i) => {
    const { x, y, w, h } = spots[i];
    ctx.fillStyle = 'rgba(10, 12, 16, 0.72)';
    ctx.fillRect(x, y, w, h);
    ctx.fillStyle = rgb(classColor(f.label));
    ctx.fillText(texts[i], x + size * 0.3, y + h * 0.75);
  });
}

export function drawFrame(image, result, annotated) {
  if (view.width !== image.width || view.height !== image.height) {
    view.width = image.width;
    view.height = image.height;
  }
  viewCtx.drawImage(image, 0, 0);
  if (!annotated) drawFaces(viewCtx, result.faces);
  const chosen = annotated && result.faces.length > 1 && result.faces.find((f) => f.id === state.selected);
  if (chosen) { // the server drew the boxes: mark the choice
    const [x, y, w, h] = chosen.box;
    viewCtx.setLineDash([8, 6]);
    viewCtx.lineWidth = 2;
    viewCtx.strokeStyle = '#fff';
    viewCtx.strokeRect(x - 6, y - 6, w + 12, h + 12);
    viewCtx.setLineDash([]);
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
export function drawChart(force = false) {
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

export function remember(result) {
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
export function selectedFace(faces) {
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
