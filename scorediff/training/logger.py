"""Where training reports go: a tqdm bar, ``metrics.jsonl``, TensorBoard when installed, a PNG curve."""

from __future__ import annotations

import json
import sys
from pathlib import Path


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **kwargs) -> None: ...

    def refresh(self) -> None: ...

    def close(self) -> None: ...


class MetricsLogger:
    """Rank 0's reporter; every method is a no-op on the other ranks."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._file = open(self.run_dir / "metrics.jsonl", "a") if enabled else None
        self._tensorboard = None
        self._bar = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                pass

    def progress(self, total: int, initial: int, enabled: bool = True):
        if not (self.enabled and enabled):
            return _NoBar()
        from tqdm import tqdm

        self._bar = tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)
        return self._bar

    def print(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()

    def plot(self) -> Path | None:
        """``training_curve.png`` from metrics.jsonl when matplotlib is installed."""
        return plot_metrics(self.run_dir)


def plot_metrics(run_dir: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line]
    train = [(r["step"], r["loss_nats_per_token"]) for r in records if r.get("loss_nats_per_token") is not None]
    val = [(r["step"], r["val_bits_per_token"]) for r in records if "val_bits_per_token" in r]
    if not train:
        return None
    figure, left = plt.subplots(figsize=(7, 4))
    left.plot(*zip(*train, strict=True), label="training loss (nats/token)", color="tab:blue")
    left.set_xlabel("step")
    left.set_ylabel("nats per token")
    if val:
        right = left.twinx()
        right.plot(*zip(*val, strict=True), "o-", label="validation bound (bits/token)", color="tab:orange")
        right.set_ylabel("bits per token")
        right.legend(loc="upper center")
    left.legend(loc="upper right")
    figure.tight_layout()
    path = Path(run_dir) / "training_curve.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
