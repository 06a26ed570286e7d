// The browser's camera: starting it (the camera chosen last time, if it is still there), the camera picker, and one
// frame as a JPEG for the photos of the personalise panel.

import { state } from './state.js';
import { $, setStatus } from './ui.js';

export const video = $('video');
let stream = null;

function cameraError(e) {
  if (e.name === 'NotAllowedError') return 'The camera was not allowed: allow it in the address bar, then reload.';
  if (e.name === 'NotFoundError' || e.name === 'OverconstrainedError') return 'No camera found.';
  if (e.name === 'NotReadableError') return 'The camera is in use by another program.';
  return `The camera did not start: ${e.message}`;
}

export async function startCamera(deviceId) {
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

export async function grabJpeg(quality = 0.92) {
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
