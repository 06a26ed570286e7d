// What the page's modules share: the live view's state, and its counters, which tests read as window.mimicStats:
//   {sent, answers, drawn, skipped, errors, fps, latencyMs, faces, reactions, sounds, lastReaction, logRows,
//    lastResult, lastDrawn, ms: {grab, jpeg, answer} (moving averages of copying a camera frame, encoding it, handling
//    an answer), cameraFrames (new frames the video element presented), unsent (camera frames passed over while
//    frames waited for their answers or one was being encoded)}

export const state = {
  info: null, classes: [], model: null, models: null, connection: null, selected: null,
  muted: localStorage.getItem('mimic.muted') === '1', soundBlocked: false, quality: 0.8,
  history: new Map(), // face id -> [{t, v: smoothed probabilities in class order}]
};

export const stats = window.mimicStats = {
  sent: 0, answers: 0, drawn: 0, skipped: 0, errors: 0, fps: 0, latencyMs: null, faces: 0, reactions: 0,
  sounds: 0, lastReaction: null, logRows: 0, lastResult: null, lastDrawn: null, cameraFrames: 0, unsent: 0,
  ms: { grab: 0, jpeg: 0, answer: 0 },
};

export const drawnTimes = []; // when answered frames were drawn, for the frames/s
export const latencies = []; // the last round trips, for their median
export const connectionStart = { t: performance.now() }; // the log table's clock
