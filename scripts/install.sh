#!/usr/bin/env bash
# Create .venv and install mimic with its dev tools, which include the scale-out extras (pyproject: dev pulls in
# mimic[scaleout]: the Optuna sweeper, the joblib and submitit launchers, the MLflow client), so that their tests run.
# Idempotent: `make` re-runs it when pyproject.toml changes.
#
# TORCH_SPEC picks the PyTorch build (default torch==2.13.0; where pip is offered a local CPU wheel of it, that wheel
# wins, otherwise PyPI's build for your platform, CUDA on Linux). Examples: TORCH_SPEC="torch>=2.3,<3".
#
# OpenCV: albumentations depends on opencv-python-headless, which shares the cv2 package folder with opencv-python
# and would leave a cv2 without windows. pyproject.toml pins both below 5 (5.x has no CascadeClassifier and no Haar
# files); here we remove the headless build and reinstall the GUI build within the same pin (the fix the window prints
# on a headless cv2), then check that exactly one cv2 has the cascade, the XML and a GUI backend.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install "$TORCH_SPEC"
"${pip[@]}" install -e ".[dev]"
"${pip[@]}" uninstall -y opencv-python-headless opencv-contrib-python-headless >/dev/null 2>&1 || true
"${pip[@]}" install --force-reinstall --no-deps "opencv-python>=4.8,<5"
"$VENV/bin/python" - <<'PY'
import os
import cv2
xml = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
gui = [l.split(":")[0].strip() for l in cv2.getBuildInformation().split("GUI:")[1].splitlines()[1:4] if "YES" in l]
problems = [m for m, ok in [("cv2.CascadeClassifier", hasattr(cv2, "CascadeClassifier")), (xml, os.path.isfile(xml)),
                            ("a GUI backend for cv2.imshow", bool(gui))] if not ok]
if problems:
    raise SystemExit(f"install: OpenCV {cv2.__version__} at {cv2.__file__} lacks: {', '.join(problems)}")
import torch
print(f"install: torch {torch.__version__}, OpenCV {cv2.__version__} (GUI: {', '.join(gui)}), in {os.environ.get('VIRTUAL_ENV') or os.path.dirname(os.path.dirname(cv2.__file__))}")
PY
