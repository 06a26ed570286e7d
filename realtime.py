"""Live emotion recognition: `python realtime.py ckpt=<file.ckpt> [source=0|video.mp4|folder] [detector=yunet]`
(installed: `mimic-live ...`).

All settings live in src/mimic/conf/realtime.yaml. `python realtime.py --list-cameras` shows which camera is which
index.
"""

from mimic.cli import live

if __name__ == "__main__":
    live()
