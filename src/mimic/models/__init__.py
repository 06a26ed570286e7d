"""The models: nets (plain nn.Modules with named stages: `small_cnn`, `resnet`, `mobilenet`, allowed and built by
`nets`), the one LightningModule that wraps any of them (`classifier`), model files and what they may say (`card`,
`checkpoint`, `onnx_model`, `onnx_export`, `quantize`, `bundled`) and inference on them (`inference`, `predictor`).

Import the modules themselves: this package imports nothing, so reading a checkpoint (`checkpoint`) or running an ONNX
file (`onnx_model`, `predictor`) does not load Lightning.
"""
