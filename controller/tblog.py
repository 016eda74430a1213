"""`run --tensorboard`: the search's results as TensorBoard scalars in RUN_DIR/tensorboard.

A Reporter that passes everything on to the live view and also writes each evaluation through
torch's SummaryWriter into RUN_DIR/tensorboard/search. ``SearchContext.tensorboard_dir`` is the
folder a strategy's own training curves go to (PPO: stable-baselines3's tensorboard logger, in
RUN_DIR/tensorboard/ppo). Steps are search evaluations across the fleet, so curves from different
runs line up by budget spent.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from controller.errors import UserError


def require() -> None:
    """Fail before any host is touched when tensorboard is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard") from None


class TensorBoardReporter:
    def __init__(self, inner, logdir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.inner = inner
        self.writer = SummaryWriter(log_dir=str(logdir / "search"))
        self.step = 0
        self.best: float | None = None

    def phase(self, name: str, detail: str = "") -> None:
        self.inner.phase(name, detail)

    def message(self, text: str) -> None:
        self.inner.message(text)

    def trial(self, t) -> None:
        self.inner.trial(t)
        if t.phase == "baseline" and t.ok:
            self.writer.add_scalar(f"baseline/{t.host}", t.raw, t.index)
        if t.phase != "search":
            return
        self.step += 1
        if t.ok:
            self.writer.add_scalar(f"raw/{t.host}", t.raw, self.step)
        if t.reward is not None:
            self.writer.add_scalar(f"reward/{t.host}", t.reward, self.step)
        change = getattr(t, "change_pct", None)
        if change is not None:
            self.writer.add_scalar(f"change_pct/{t.host}", change, self.step)
            self.best = change if self.best is None else max(self.best, change)
            self.writer.add_scalar("change_pct/fleet_best_so_far", self.best, self.step)

    def close(self) -> None:
        self.writer.close()


@contextmanager
def reporting(inner, logdir: Path | None):
    """`inner`, also writing to TensorBoard when logdir is set; the event files are closed after."""
    if logdir is None:
        yield inner
        return
    board = TensorBoardReporter(inner, logdir)
    try:
        yield board
    finally:
        board.close()
