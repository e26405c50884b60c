"""A trained screen: which layers of which model, their autoencoders, and the detectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.models import checkpoint
from pipeline.screen import detector as det
from pipeline.errors import WeightsError
from pipeline.screen.autoencoder import LayerAE
from pipeline.screen.exits import WIDTH, exit_columns
from pipeline.screen.taps import rows

TASK = "screen"


class ScreenModel:
    """`layers` are ordered shallow to deep. An early-exit target may stop before the deep ones,
    so there is one detector per depth d (it sees layers[:d]); `clean[d]` holds sorted scores of
    held-out clean inputs, which turn a raw score into the share of clean inputs it exceeds."""

    def __init__(self, layers: list[str], aes: list[LayerAE], detectors: dict[int, object],
                 clean: dict[int, np.ndarray], target: dict, codes: bool = False, meta: dict | None = None,
                 exits: bool = False):
        self.layers, self.aes, self.detectors = list(layers), aes, detectors
        self._scorers = {d: det.for_inference(m) for d, m in detectors.items()}
        self.clean = {d: np.sort(np.asarray(v, np.float64)) for d, v in clean.items()}
        self.target, self.codes, self.meta = target, codes, meta or {}
        # an early-exit target whose exit i sits on layers[i] (the last: the final head): exit i's
        # confidences join layer i's features, so depth d still means "the first d layers"
        self.exits = exits
        # precision -> clean score tables like `clean`, from the target's activations at that precision
        # (pipeline/screen/calibration.py); `clean` is the float model's
        self.calibrations: dict[str, dict[int, np.ndarray]] = {}
        for ae in aes:
            ae.eval()

    def to(self, device: str) -> ScreenModel:
        for ae in self.aes:
            ae.to(device)
        return self

    # -- features and scores --------------------------------------------------------------
    def layer_features(self, calls: list[dict], codes: bool | None = None, exits: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(features [n, sum of per-layer widths] with NaN where a layer was not reached,
        depth [n]) for every sample of the recorded calls, in order. `codes` and `exits` override
        whether the latent codes and the exits' confidences join each layer's error and norm
        (the detectors expect `self.codes` and `self.exits`)."""
        codes = self.codes if codes is None else codes
        exits = self.exits if exits is None else exits
        n_all = sum(c["n"] for c in calls)
        if not n_all:
            return np.zeros((0, 0)), np.zeros(0, int)
        starts = np.cumsum([0] + [c["n"] for c in calls])
        exit_rows = self._exit_rows(calls) if exits else None
        parts, depth = [], torch.full((n_all,), len(self.layers), dtype=torch.long)
        for i, (name, ae) in enumerate(zip(self.layers, self.aes)):
            f = torch.full((n_all, 2 + (ae.encoder[-1].out_features if codes else 0)), float("nan"))
            # pooled to the AE's grid, every call's rows share one AE pass (a tracker feeds one frame a call)
            idx, x = [], []
            for call, start in zip(calls, starts):
                act = call["acts"].get(name)
                if act is not None and act.shape[0]:
                    idx.append(rows(act.shape[0], call["exit"], call["n"]) + int(start))
                    x.append(ae.prepare(act))
            if x:
                f[torch.cat(idx)] = ae.features_of(torch.cat(x), codes).cpu()
            reached = ~torch.isnan(f[:, 0])
            depth = torch.where(~reached & (depth > i), torch.full_like(depth, i), depth)
            parts.append(f)
            if exits:
                parts.append(self._exit_part(exit_rows, starts, n_all, i))
        return torch.cat(parts, 1).numpy(), depth.numpy()

    @staticmethod
    def _exit_rows(calls: list[dict]) -> list[tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]]:
        """Per call: each exit's log-probs, the samples (of the call's n) they belong to, and each
        sample's decision, which is the exit it left at."""
        out = []
        for call in calls:
            lps = call.get("exit_lp")
            if not call["n"]:
                out.append(([], [], torch.zeros(0, dtype=torch.long)))
                continue
            if lps is None:
                raise WeightsError("this screen reads the target's exits, but its model records no per-exit log-probs",
                                   "screen an early-exit model (adaptive.EarlyExitModel), or retrain the screen with `exits: false`")
            ex = call["exit"] if call["exit"] is not None else torch.full((call["n"],), len(lps) - 1)
            idx = [rows(lp.shape[0], ex, call["n"]) for lp in lps]
            decided = torch.zeros(call["n"], dtype=torch.long)
            for m, (lp, r) in enumerate(zip(lps, idx)):
                here = ex[r] == m
                decided[r[here]] = lp[here].argmax(1)
            out.append((lps, idx, decided))
        return out

    @staticmethod
    def _exit_part(exit_rows: list, starts: np.ndarray, n_all: int, i: int) -> torch.Tensor:
        """Exit i's confidences [n_all, WIDTH], NaN where not reached."""
        f = torch.full((n_all, WIDTH), float("nan"))
        for (lps, idx, decided), start in zip(exit_rows, starts):
            if i < len(lps) and lps[i].shape[0]:
                f[idx[i] + int(start)] = exit_columns(lps[i], decided[idx[i]])
        return f

    def _width(self, d: int) -> int:
        return d * (2 + (self.aes[0].encoder[-1].out_features if self.codes else 0) + (WIDTH if self.exits else 0))

    def raw_scores(self, X: np.ndarray, depth: np.ndarray) -> np.ndarray:
        out = np.full(len(X), np.nan)
        for d in np.unique(depth):
            if d == 0 or d not in self.detectors:
                continue  # a sample that left before the first screened layer is not scored
            m = depth == d
            out[m] = det.score(self._scorers[d], X[m][:, : self._width(d)])
        return out

    def percentile(self, raw: np.ndarray, depth: np.ndarray, clean: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """Share of held-out clean inputs scoring below each input: 0.5 is typical, 1.0 is beyond all."""
        clean = self.clean if clean is None else clean
        out = np.full(len(raw), np.nan)
        for d in np.unique(depth):
            if d in clean:
                m = (depth == d) & ~np.isnan(raw)
                out[m] = np.searchsorted(clean[d], raw[m], side="left") / len(clean[d])
        return out

    def scores(self, calls: list[dict]) -> np.ndarray:
        """Each sample against the clean inputs of its call's precision: an 8-bit model's activations
        differ a little from the float model's, and its clean inputs score a little higher."""
        X, depth = self.layer_features(calls)
        raw = self.raw_scores(X, depth)
        out = self.percentile(raw, depth)
        if self.calibrations:
            prec = np.repeat([c.get("precision", "fp32") for c in calls], [c["n"] for c in calls])
            for p, clean in self.calibrations.items():
                m = prec == p
                if m.any():
                    out[m] = self.percentile(raw[m], depth[m], clean)
        return out

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        ckpt = {"task": TASK, "layers": self.layers, "codes": self.codes, "exits": self.exits, "target": self.target, "meta": self.meta,
                # fp16 halves what ships in git; load_state_dict casts back to fp32
                "aes": [{"args": ae.args, "state_dict": {k: v.half() for k, v in ae.state_dict().items()}} for ae in self.aes],
                "detectors": {int(d): torch.frombuffer(bytearray(det.dumps(m)), dtype=torch.uint8) for d, m in self.detectors.items()},
                "clean": {int(d): torch.from_numpy(v) for d, v in self.clean.items()}}
        checkpoint.write(path, ckpt)

    @classmethod
    def load(cls, path: str | Path) -> ScreenModel:
        ckpt = checkpoint.read_task(path, TASK, "screen", "run `dvc repro train_screen`, or remove the screen stage from the flow config",
                                    "point the screen's `model:` at screen weights (data/weights/screen_*.pt)")
        aes = []
        for a in ckpt["aes"]:
            ae = LayerAE(**a["args"])
            ae.load_state_dict(a["state_dict"])
            # NHWC convs: 1.2-1.6x faster on the CPU at these sizes, same features (training keeps NCHW)
            aes.append(ae.to(memory_format=torch.channels_last))
        dets = {int(d): det.loads(bytes(t.numpy().tobytes()), str(path)) for d, t in ckpt["detectors"].items()}
        return cls(ckpt["layers"], aes, dets, {int(d): t.numpy() for d, t in ckpt["clean"].items()},
                   ckpt["target"], ckpt["codes"], ckpt["meta"], ckpt.get("exits", False))
