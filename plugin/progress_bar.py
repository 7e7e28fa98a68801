"""The progress bar of :func:`gemini_annotate.annotate`: samples/s, failures and ETA on stderr.

It follows FiftyOne's convention for ``progress`` arguments: ``True``/``False``
shows or hides the bar, ``None`` follows ``fo.config.show_progress_bars``, and
a callable receives each :class:`~gemini_annotate.job.RunProgress` instead.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Optional, Union

import fiftyone as fo
from tqdm.auto import tqdm

from .job import ProgressCallback, RunProgress

ProgressOption = Union[bool, None, ProgressCallback]
"""What ``annotate(progress=...)`` accepts."""


class RunProgressBar:
    """A tqdm bar fed with :class:`RunProgress` snapshots (counts, not increments)."""

    def __init__(self, file=None):
        self._bar = tqdm(total=None, unit=" samples", desc="gemini-annotate", dynamic_ncols=True,
                         file=file or sys.stderr, smoothing=0.1)
        self._message: Optional[str] = None

    def __call__(self, progress: RunProgress) -> None:
        bar = self._bar
        if progress.message and progress.message != self._message:
            bar.set_description_str(progress.message, refresh=False)
        self._message = progress.message
        if bar.total != progress.total:
            bar.total = progress.total
        bar.set_postfix_str(f"{progress.failed} failed, {progress.labels} labels", refresh=False)
        bar.update(progress.finished - bar.n)

    def close(self) -> None:
        self._bar.close()


@contextlib.contextmanager
def progress_reporter(progress: ProgressOption) -> Iterator[Optional[Callable[[RunProgress], None]]]:
    """The callback a run reports to, for an ``annotate(progress=...)`` value; closes the bar after.

    Example::

        with progress_reporter(None) as report:  # a bar if fo.config.show_progress_bars
            run_annotation(samples, config, progress=report)
    """
    if callable(progress):
        yield progress
        return
    show = fo.config.show_progress_bars if progress is None else bool(progress)
    if not show:
        yield None
        return
    bar = RunProgressBar()
    try:
        yield bar
    finally:
        bar.close()
