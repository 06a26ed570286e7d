// The model picker: the models the server offers (GET /api/models), the one this page's connection uses, and the
// switch between them. Other panels follow it with onModelsChanged.

import { apiJson } from './api.js';
import { refreshLogName, setClasses, setLog } from './panels.js';
import { state } from './state.js';
import { $, setStatus } from './ui.js';

const listeners = new Set();
let modelsKey = '';

const modelsEvent = () => ({ models: state.models.slice(), current: state.model?.id ?? null,
  classes: state.classes.slice() });

function notifyModels() {
  if (!state.models) return;
  const event = modelsEvent();
  for (const cb of listeners) {
    try { cb(event); } catch (e) { console.error(e); }
  }
}

// cb({models, current, classes}) now (when the list is known) and whenever the list is reloaded or the model
// switches; returns a function that unsubscribes.
export function onModelsChanged(cb) {
  listeners.add(cb);
  if (state.models) {
    try { cb(modelsEvent()); } catch (e) { console.error(e); }
  }
  return () => listeners.delete(cb);
}

export const currentModelId = () => state.model?.id ?? null;

export function setModel(entry, classes) {
  if (!entry) return;
  state.model = entry;
  setClasses(classes || entry.classes);
  fillModelPicker();
  notifyModels();
}

// A model's line in the picker, each thing said once: "bundled · 70.0%", "run/best.ckpt · 64.2%" (the accuracy where
// the server knows it). The option's title has the whole name and where the file is.
export function modelLabel(m) {
  const acc = m.accuracy == null ? '' : ` · ${(m.accuracy * 100).toFixed(1)}%`;
  return `${m.kind === 'bundled' ? 'bundled' : m.name}${acc}`;
}

function fillModelPicker() {
  const picker = $('model-picker');
  const models = (state.models || []).slice();
  if (state.model && !models.some((m) => m.id === state.model.id)) models.unshift(state.model);
  if (!models.length) return;
  picker.replaceChildren(...models.map((m) => {
    const option = new Option(modelLabel(m), m.id);
    option.title = [m.name, m.path_hint].filter(Boolean).join(': ');
    return option;
  }));
  picker.value = state.model?.id ?? '';
  picker.title = picker.selectedOptions[0]?.title || '';
  picker.disabled = !state.models;
}

// The server's list again (it rescans its folder on each request); the list.
export async function loadModels() {
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

// This page's connection (or, before it is open, the server's default) switches to model ``id``.
export async function switchModel(id) {
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
$('model-picker').addEventListener('focus', loadModels);
