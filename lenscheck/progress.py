"""Progress of ``lenscheck run``: a spinner on a terminal, one log line per stage elsewhere.

On a terminal a transient rich spinner shows the model and its current stage. When stderr
is not a terminal (CI logs, pipes, files) a spinner shows nothing until the end, so each
finished stage is logged instead, one line per model per stage with its wall time::

    lenscheck: embedded: load done in 1.2 s
    lenscheck: embedded: lens done in 0.9 s
    lenscheck: embedded: write done in 0.3 s

The lines go through :mod:`logging` (logger ``lenscheck.progress``); the library never
prints. :func:`install_log_handler` gives that logger the ``lenscheck:`` prefix format on
stderr, which the console script does; a library user's own logging configuration decides
otherwise.

transformers draws its own tqdm bars ("Loading weights", "Converting and de-quantizing GGUF
tensors") that land in the middle of these lines; :func:`quiet_library_progress` switches
them off for the duration of lenscheck work and restores the previous settings afterwards
(``-v`` keeps them).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

__all__ = [
    "LOGGER_NAME",
    "StageProgress",
    "install_log_handler",
    "model_progress",
    "quiet_library_progress",
    "stderr_is_terminal",
]

#: The logger the per-stage lines go to.
LOGGER_NAME = "lenscheck.progress"
log = logging.getLogger(LOGGER_NAME)

_GGUF_MODULE = "transformers.modeling_gguf_pytorch_utils"

# transformers and rich are imported inside the functions that use them: the console script
# imports this module for every command (and the plugin with every session), and
# quiet_library_progress must work without transformers.


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal (a spinner can be drawn there)."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (pytest swaps it per test)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def install_log_handler() -> None:
    """Send ``lenscheck.progress`` INFO lines to stderr as ``lenscheck: <message>``.

    Idempotent; the logger stops propagating so the root handler does not print them twice.
    """
    if any(isinstance(h, _StderrHandler) for h in log.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("lenscheck: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


@contextmanager
def quiet_library_progress(verbose: bool = False) -> Iterator[None]:
    """Switch transformers' progress bars off inside the block, then restore them.

    transformers draws bars two ways: through its own logging helpers (``Loading weights``
    and friends), which ``disable_progress_bar()`` switches off, and with plain tqdm in its
    GGUF reader (``Converting and de-quantizing GGUF tensors``, the embedded model's
    one-time conversion), whose ``tqdm`` is swapped for a disabled one here. ``verbose``
    keeps every bar. Without transformers installed this does nothing.
    """
    if verbose:
        yield
        return
    restore: list[Callable[[], None]] = []
    try:
        hf_logging: Any = None
        gguf: Any = None
        # transformers absent or broken: nothing of its to silence. The GGUF reader is
        # imported here (0.1 s once transformers' modelling code is loaded, which any
        # model load needs) so that its bar is off however it gets loaded later.
        with contextlib.suppress(Exception):
            from transformers.utils import logging as hf_logging
        with contextlib.suppress(Exception):
            gguf = importlib.import_module(_GGUF_MODULE)
        if hf_logging is not None and hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            restore.append(hf_logging.enable_progress_bar)
        bar = getattr(gguf, "tqdm", None)
        if bar is not None and not isinstance(bar, functools.partial):
            gguf.tqdm = functools.partial(bar, disable=True)
            restore.append(lambda: setattr(gguf, "tqdm", bar))
        yield
    finally:
        for undo in reversed(restore):
            undo()


class StageProgress:
    """Report the stages of one model's run: spinner or one log line per finished stage.

    Use as a context manager and call :meth:`stage` with each stage's name as it starts;
    the previous stage ends there, the last one when the block exits (``failed after``
    when it exits with an exception).
    """

    def __init__(
        self,
        spec: str,
        *,
        interactive: bool,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.spec = spec
        self.interactive = interactive
        self.clock = clock
        self.current: tuple[str, float] | None = None
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> StageProgress:
        if self.interactive:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),  # stdout carries the summary table
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(f"{self.spec}: start", total=None)
        return self

    def stage(self, name: str) -> None:
        """Stage ``name`` starts now (and the previous one, if any, ends)."""
        now = self.clock()
        self._finish(now, failed=False)
        self.current = (name, now)
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self.spec}: {name}")

    def _finish(self, now: float, *, failed: bool) -> None:
        if self.current is None:
            return
        name, started = self.current
        self.current = None
        if self.interactive:
            return
        verb = "failed after" if failed else "done in"
        log.info("%s: %s %s %.1f s", self.spec, name, verb, now - started)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish(self.clock(), failed=exc_type is not None)
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def model_progress(
    spec: str, *, verbose: int = 0, interactive: bool | None = None
) -> Iterator[Callable[[str], None]]:
    """The CLI's progress for one model: yields the ``stage(name)`` callback for
    :func:`lenscheck.runner.run_model`, with transformers' bars quiet unless ``verbose``.

    ``interactive`` defaults to :func:`stderr_is_terminal`.
    """
    if interactive is None:
        interactive = stderr_is_terminal()
    with (
        quiet_library_progress(verbose=verbose > 0),
        StageProgress(spec, interactive=interactive) as progress,
    ):
        yield progress.stage
