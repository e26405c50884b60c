"""Run a torch model's forward pass through ONNX Runtime, keeping the model itself.

On CPU, ONNX Runtime fuses what PyTorch's eager mode runs op by op (BatchNorm and activations
into the convolutions, the decoder's upsample+concat) and picks blocked layouts: the damage
segmenter runs ~1.5x faster (benchmarks/stage_costs.py). The torch module stays the stage's
model, with its named submodules, so anything that hooks a submodule's output (the screen's
activation taps) keeps working: the exported graph also outputs every hooked submodule, and
those hooks are called with ONNX Runtime's tensors.

An input size that keeps coming back (a video's frames, a tile) gets a graph exported at that fixed size:
its shapes are constants, so ONNX Runtime folds the decoder's size arithmetic and plans its buffers
once. Other sizes (a folder of photos of many sizes) run the graph with free height and width.

With `calibrate` set, each fixed-size graph is quantized to 8 bits before it runs (pipeline/models/int8.py).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import ConfigError

CACHE = Path(os.environ.get("INSPECTFLOW_CACHE", Path.home() / ".cache" / "inspectflow")) / "onnx"
# a size seen in this many calls gets its own fixed-size graph (an export the first time, ~2-3 s, then
# cached on disk), for at most FIXED_SIZES sizes per model: a fixed-size graph ran the component and
# damage segmenters on 720p frames 1.17x / 1.13x faster than the free-size one (benchmarks/stage_costs.py)
FIXED_AFTER, FIXED_SIZES = 3, 4


def _first(out):
    return out if isinstance(out, torch.Tensor) else out[0]


def _int8_path(path: Path) -> Path:
    from pipeline.models.int8 import CALIBRATION_VERSION, reduce_range

    return path.with_name(f"{path.stem}-int8v{CALIBRATION_VERSION}{'r' if reduce_range() else ''}.onnx")


class _Exported(nn.Module):
    """The model's own forward, returning its output and the outputs of `names`, for export."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names
        self.mods = dict(model.named_modules())

    def forward(self, x):
        got: dict[str, torch.Tensor] = {}
        handles = [self.mods[n].register_forward_hook(lambda m, a, o, n=n: got.__setitem__(n, _first(o)))
                   for n in self.names]
        try:
            y = type(self.model).forward(self.model, x)  # the class's forward: not the ONNX one set on the instance
        finally:
            for h in handles:
                h.remove()
        return (_first(y), *(got[n] for n in self.names))


class OnnxForward:
    """Set as a model's `forward`: exports on first use (and when the set of hooked submodules
    changes), caches the .onnx file by weights and outputs, and runs it with ONNX Runtime.

    `calibrate`, when given, maps an input size (h, w) to calibration inputs (NCHW float32 arrays), and
    every fixed-size graph runs quantized to 8 bits, its activation ranges taken from those inputs."""

    def __init__(self, model: nn.Module, key: str, threads: int | None = None, fixed_sizes: int | None = None,
                 calibrate: Callable[[tuple[int, int]], list[np.ndarray]] | None = None):
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise ConfigError("`runtime: onnxruntime` is set, but the onnxruntime package is not installed",
                              "pip install onnxruntime, or set `runtime: torch`") from e
        self.model, self.key = model, key
        self.threads = threads or torch.get_num_threads()
        self.mods = dict(model.named_modules())
        self._sessions: dict[tuple, object] = {}  # (hooked names, (h, w) or None for free size) -> session
        self.fixed_sizes = FIXED_SIZES if fixed_sizes is None else fixed_sizes
        self._seen: Counter = Counter()
        self.calibrate = calibrate

    def _hooked(self) -> tuple[str, ...]:
        return tuple(n for n, m in self.mods.items() if n and m._forward_hooks)

    def _session(self, names: tuple[str, ...], size: tuple[int, int] | None = None):
        if (names, size) not in self._sessions:
            import onnxruntime as ort

            path = self._export(names, size)
            so = ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            # idle pool threads would otherwise spin for a while after each run, taking the cores from
            # the torch stages that run next (measured: the whole chain ran ~10% slower)
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                sess = ort.InferenceSession(str(self._int8(path, size)), so, providers=["CPUExecutionProvider"])
            except Exception:  # a cached file (float or 8-bit) damaged since it was written: export it again
                path.unlink(missing_ok=True)
                _int8_path(path).unlink(missing_ok=True)
                sess = ort.InferenceSession(str(self._int8(self._export(names, size), size)), so,
                                            providers=["CPUExecutionProvider"])
            self._sessions[names, size] = sess
        return self._sessions[names, size]

    def _int8(self, path: Path, size: tuple[int, int] | None) -> Path:
        """The graph to run: `path` itself, or its 8-bit version for a calibrated model's fixed-size graph.
        The free-size graph stays float: quantized, it kept only 80-95% of the component segmenter's mask
        pixels on synthetic views (a fixed-size graph: 99.3-99.5%), so only the first calls before a size
        gets its own graph, and sizes beyond `fixed_sizes`, run in float."""
        if self.calibrate is None or size is None:
            return path
        from pipeline.models.int8 import quantize

        q = _int8_path(path)
        return q if q.exists() else quantize(path, q, lambda: self.calibrate(size))

    def _fixed(self, size: tuple[int, int]) -> bool:
        """Whether inputs of this size run a fixed-size graph (one image per run)."""
        fixed = {s for _, s in self._sessions if s is not None}
        if size in fixed:
            return True
        self._seen[size] += 1
        return self._seen[size] >= FIXED_AFTER and len(fixed) < self.fixed_sizes

    def _export(self, names: tuple[str, ...], size: tuple[int, int] | None = None) -> Path:
        # the class's code comes from a library (smp, timm): a new version may build another graph
        cls = type(self.model)
        lib = sys.modules.get(cls.__module__.split(".")[0])
        tag = hashlib.sha256(repr((self.key, names, size, cls.__module__, cls.__qualname__, getattr(lib, "__version__", None),
                                   torch.__version__)).encode()).hexdigest()[:20]
        cache = CACHE
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only home: the export lives as long as the temp folder
            cache = Path(tempfile.gettempdir()) / "inspectflow-onnx"
            cache.mkdir(parents=True, exist_ok=True)
        path = cache / f"{tag}.onnx"
        if path.exists():
            return path
        outs = ["y", *(f"t{i}" for i in range(len(names)))]
        dyn = None if size else {"x": {0: "n", 2: "h", 3: "w"}} | {o: {0: "n"} for o in outs}
        # hooks must not see the tracing pass: they are set aside while exporting
        saved = {n: dict(self.mods[n]._forward_hooks) for n in names}
        for n in names:
            self.mods[n]._forward_hooks.clear()
        fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=cache)
        os.close(fd)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(_Exported(self.model, names), (torch.zeros(1, 3, *(size or (64, 64))),), tmp, dynamo=False,
                                  input_names=["x"], output_names=outs, dynamic_axes=dyn, opset_version=17)
            os.replace(tmp, path)  # atomic: a concurrent run never reads half a file
        finally:
            for n in names:
                self.mods[n]._forward_hooks.update(saved[n])
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    def prepare(self) -> None:
        self._session(self._hooked())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ConfigError(f"`runtime: onnxruntime` runs on the CPU, but the input is on {x.device}",
                              "set `device: cpu`, or `runtime: torch` for an accelerator")
        if x.requires_grad and torch.is_grad_enabled():
            raise ConfigError("`runtime: onnxruntime` computes no gradients, and this call needs them (an attack or training)",
                              "load the stage with `runtime: torch` for anything that backpropagates")
        names = self._hooked()
        xa = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
        size = tuple(xa.shape[2:])
        fixed = self._fixed(size)
        # what this call ran at, for a screen reading its activations: a screen calibrated on 8-bit activations
        # scores only the calls that were 8-bit with it (pipeline/screen/taps.py)
        self.model.last_precision = "int8" if fixed and self.calibrate is not None else "fp32"
        if fixed:
            sess = self._session(names, size)
            runs = [sess.run(None, {"x": xa[i : i + 1]}) for i in range(len(xa))]
            outs = [np.concatenate(o) for o in zip(*runs)]
        else:
            outs = self._session(names).run(None, {"x": xa})
        for n, arr in zip(names, outs[1:]):
            m, t = self.mods[n], torch.from_numpy(arr)
            for hook in list(m._forward_hooks.values()):
                hook(m, (None,), t)
        return torch.from_numpy(outs[0])


def use_onnxruntime(model: nn.Module, key: str,
                    calibrate: Callable[[tuple[int, int]], list[np.ndarray]] | None = None) -> nn.Module:
    """The same module, whose calls now run through ONNX Runtime. `key` names the weights
    (a content hash), so a cached export is never reused for other weights; `calibrate`: see OnnxForward."""
    model.forward = OnnxForward(model, key, calibrate=calibrate)
    return model
