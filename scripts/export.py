"""Export a checkpoint as a self-describing ONNX file: `python scripts/export.py ckpt=best.ckpt [out=model.onnx]`
(installed: `mimic-export ...`; `--help` lists the keys)."""

from mimic.export import main

if __name__ == "__main__":
    main()
