"""Train an emotion classifier: `python train.py model=small_cnn data=fer2013` (all settings live in conf/)."""

import hydra
from omegaconf import DictConfig

from mimic.cli import user_errors
from mimic.settings import check_settings


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_settings(cfg, "train")
        from mimic.train import run

        run(cfg)


if __name__ == "__main__":
    main()
