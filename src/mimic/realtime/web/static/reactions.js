// Reactions: the picture that pops up over the stage and the sound it plays when a face's reaction fires (the server
// decides when; GET /api/reactions/<class>/<image|sound> gives the files), and the mute button.

import { url } from './api.js';
import { state, stats } from './state.js';
import { $, setStatus } from './ui.js';

const sounds = new Map();
let reactionTimer = 0;
export function react(label) {
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

export function showMute() {
  const button = $('mute');
  button.textContent = state.muted ? 'Sound off' : 'Sound on';
  button.setAttribute('aria-pressed', String(state.muted));
}
$('mute').addEventListener('click', () => {
  state.muted = !state.muted;
  localStorage.setItem('mimic.muted', state.muted ? '1' : '0');
  showMute();
});
