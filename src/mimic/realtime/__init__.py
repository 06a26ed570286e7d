"""The realtime app: frames from a camera, video or image folder -> faces -> live emotion probabilities.

``python realtime.py ckpt=...`` (conf/realtime.yaml) runs `mimic.realtime.app.run`. The parts stand alone:
`predictor` (checkpoint -> batched probabilities), `tracker`, `smoothing`, `overlay`, `reactions`, `csvlog` and
`sources`.

Face detection is `mimic.faces`, outside this package, because the capture script and the folder loader use it too.
Nothing in here is imported by `mimic.models` or `mimic.data`; importing this package is cheap (no torch, no GUI).
"""
