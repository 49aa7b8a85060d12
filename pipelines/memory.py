"""The memory budget: a step estimates its peak from its rows before it starts, and refuses to
start when the estimate is over the budget, instead of being killed by the kernel halfway.

The estimates are linear in the rows, with coefficients measured by ``alphaops bench scale``
(peak RSS of one process per step at 100k to 2.6M one-minute bars, ``docs/benchmarks.md``),
rounded up. They are meant to err high: a step that fits its estimate fits the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipelines.config import Settings

Step = Literal["ingest", "features", "labels", "train", "validate"]

MB = 1 << 20
# What a step's process holds before it reads a row (interpreter, pandas, chDB; for train
# also MLflow, LightGBM, onnxruntime), in bytes.
PROCESS_BASE_BYTES: dict[Step, int] = {"ingest": 600 * MB, "features": 600 * MB, "labels": 600 * MB,
                                       "train": 1_000 * MB, "validate": 1_000 * MB}
# Bytes per bar that do not depend on the feature count: the bars, timestamps and label columns.
BYTES_PER_BAR: dict[Step, int] = {"ingest": 1_400, "features": 350, "labels": 700, "train": 200, "validate": 200}
# Bytes per (bar, feature) cell: features per cell of one piece being computed (float64
# buffers of the engine, the float32 piece and its Arrow copy); train per cell of the training
# matrix (the float32 read, the matrix, LightGBM's binned copy and the validation folds).
BYTES_PER_CELL: dict[Step, int] = {"ingest": 0, "features": 40, "labels": 0, "train": 14, "validate": 14}


class MemoryBudgetExceeded(RuntimeError):
    """A step's estimated peak is over ``ALPHAOPS_MEMORY_BUDGET_MB``; nothing was read or written."""


@dataclass(frozen=True)
class MemoryEstimate:
    step: Step
    rows: int
    n_features: int
    peak_bytes: int
    budget_bytes: int

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.budget_bytes

    def message(self) -> str:
        return (f"{self.step}: estimated peak memory {self.peak_bytes / MB:,.0f} MB for {self.rows:,} bars x "
                f"{self.n_features} features is over the budget of {self.budget_bytes / MB:,.0f} MB "
                "(ALPHAOPS_MEMORY_BUDGET_MB, default half of this machine's memory); raise the budget, or "
                "lower ALPHAOPS_FEATURE_CHUNK_ROWS / ALPHAOPS_MAX_TRAIN_BYTES, or train on fewer bars")


def memory_budget_bytes(settings: Settings) -> int:
    """``ALPHAOPS_MEMORY_BUDGET_MB``, or half of this machine's physical memory."""
    if settings.memory_budget_mb is not None:
        return settings.memory_budget_mb * MB
    import psutil

    return psutil.virtual_memory().total // 2


def estimate_peak_bytes(step: Step, *, rows: int, n_features: int, chunk_rows: int) -> int:
    """The peak RSS of ``step`` on ``rows`` bars; features compute ``chunk_rows`` bars at a time."""
    cells = min(rows, chunk_rows) * n_features if step == "features" else rows * n_features
    return PROCESS_BASE_BYTES[step] + rows * BYTES_PER_BAR[step] + cells * BYTES_PER_CELL[step]


def require_memory(settings: Settings, step: Step, *, rows: int, n_features: int) -> MemoryEstimate:
    """The estimate of ``step``; raises :class:`MemoryBudgetExceeded` (naming it) when over budget."""
    estimate = MemoryEstimate(step=step, rows=rows, n_features=n_features,
                              peak_bytes=estimate_peak_bytes(step, rows=rows, n_features=n_features,
                                                             chunk_rows=settings.feature_chunk_rows),
                              budget_bytes=memory_budget_bytes(settings))
    if not estimate.fits:
        raise MemoryBudgetExceeded(estimate.message())
    return estimate
