"""The calib tests quantize the stand-in transformer exported by the export tests' fixtures."""

from tests.export.conftest import _one_torch_thread, standin, standin_onnx  # noqa: F401  (pytest fixtures)
