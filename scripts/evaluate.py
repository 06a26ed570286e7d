"""Evaluate a checkpoint on any data config: `python scripts/evaluate.py ckpt=best.ckpt data=fer2013 split=test`."""

import hydra
from omegaconf import DictConfig

from mimic.cli import user_errors
from mimic.settings import check_settings


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_settings(cfg, "evaluate")
        from mimic.evaluate import run

        run(cfg)


if __name__ == "__main__":
    main()
