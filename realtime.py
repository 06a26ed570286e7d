"""Live emotion recognition: `python realtime.py ckpt=<file.ckpt> [source=0|video.mp4|folder] [detector=yunet]`.

All settings live in conf/realtime.yaml. `python realtime.py --list-cameras` shows which camera is which index.
"""

import sys

import hydra
from omegaconf import DictConfig

from mimic.cli import user_errors
from mimic.settings import check_settings


@hydra.main(config_path="conf", config_name="realtime", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_settings(cfg, "realtime")
        from mimic.realtime.app import run

        run(cfg)


if __name__ == "__main__":
    if "--list-cameras" in sys.argv:  # the familiar flag, as the Hydra override it stands for
        sys.argv = [a if a != "--list-cameras" else "list_cameras=true" for a in sys.argv]
    main()
