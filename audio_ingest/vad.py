"""`SileroVad`: speech probability per 32 ms window, with the Silero model in faster-whisper.

The Silero VAD v6 ONNX model ships inside the faster-whisper wheel (``assets/``). It scores
512-sample windows at 16 kHz, each with the 64 samples before it as context (as
faster-whisper's own batch VAD feeds it), so a stream can be scored window by window with no
state beyond those 64 samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

WINDOW = 512  # samples: 32 ms at 16 kHz
_CONTEXT = 64


def bundled_vad_path() -> Path:
    from faster_whisper.vad import get_assets_path

    return Path(get_assets_path()) / "silero_vad_v6.onnx"


class SileroVad:
    """Scores whole windows; the caller keeps the tail of a frame for the next call."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session = ort.InferenceSession(
            str(path or bundled_vad_path()), options, providers=["CPUExecutionProvider"]
        )
        self._state = np.zeros((1, 1, 128), dtype=np.float32)

    def probabilities(
        self, windows: npt.NDArray[np.float32], context: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Speech probability of each row of ``windows`` (n x 512); ``context``: the 64 samples
        before the first row."""
        if windows.ndim != 2 or windows.shape[1] != WINDOW:
            raise ValueError(f"windows must be (n, {WINDOW})")
        if windows.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        tails = np.concatenate([context[None, -_CONTEXT:], windows[:-1, -_CONTEXT:]], axis=0)
        batch = np.concatenate([tails, windows], axis=1).astype(np.float32)
        out, _h, _c = self._session.run(None, {"input": batch, "h": self._state, "c": self._state})
        return np.asarray(out, dtype=np.float32).reshape(-1)
