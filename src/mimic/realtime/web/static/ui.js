// Small page helpers: elements by id, the status line, the classes' colours.

export const $ = (id) => document.getElementById(id);

const COLORS = { // the window app's class colours (mimic.realtime.overlay), as RGB
  angry: [220, 40, 40], disgust: [40, 150, 40], fear: [150, 60, 160], happy: [250, 200, 30],
  sad: [40, 120, 200], surprise: [255, 140, 30], neutral: [190, 190, 190], contempt: [40, 110, 120],
};

export function classColor(name) {
  if (COLORS[name]) return COLORS[name];
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return [60 + (h % 180), 60 + ((h >>> 8) % 180), 60 + ((h >>> 16) % 180)];
}

export const rgb = (c, a = 1) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;

let statusTimer = 0;
// The header's status line; an 'info' text goes away after 6 s, an 'error' stays.
export function setStatus(text, kind = 'info') {
  const el = $('status');
  el.textContent = text || '';
  el.dataset.kind = kind;
  clearTimeout(statusTimer);
  if (text && kind === 'info') statusTimer = setTimeout(() => { el.textContent = ''; }, 6000);
}
