"""The realtime app: frames from a camera, video or image folder -> faces -> live emotion probabilities.

`pipeline` is the per-frame work (track, classify, smooth, react, log) with a plain result per frame; front-ends render
it: `window` (the OpenCV window and the recorder, driven by `app.run`, which ``python realtime.py ckpt=...`` calls with
conf/realtime.yaml). The parts stand alone: `predictor` (checkpoint -> batched probabilities), `tracker`, `smoothing`,
`reactions`, `csvlog`, `overlay` and `sources`.

Face detection is `mimic.faces`, outside this package, because the capture script and the folder loader use it too.
Nothing in here is imported by `mimic.models` or `mimic.data`; importing this package is cheap (no torch, no GUI).
"""
