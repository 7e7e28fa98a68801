"""The review panel of the FiftyOne App: a keyboard loop over Gemini's labels, least sure first.

A FiftyOne Python panel (no JS build). It lets a labeler pick a run, see the
labels by review status and by class, the review progress and the precision
measured so far, and decide one label at a time with a key
(:data:`gemini_annotate.review_loop.KEYS`: ``a`` accept, ``r`` reject, ``e``
edit, ``n`` next sample, ``A`` accept the rest). The work is
:mod:`gemini_annotate.review_loop`'s; the panel shows its position in the App:

- the grid shows the current sample alone (``show_samples``: a ``Select`` view),
  with its labels drawn by review status; the panel names the label to decide
  (class, confidence, id) and the ones after it;
- after every key the grid is reloaded (``reload_samples``): the new status
  shows without reloading the page;
- ``e`` opens the sample in the modal in FiftyOne's own annotation mode (the
  App's built-in ``annotate`` operator, open source since FiftyOne 1.x) after
  Gemini's version was kept in ``<field>_proposed``; back in the panel, ``a``
  records the label as ``edited`` if it changed.

Python panels get no keystrokes of their own (FiftyOne has no hotkeys for
Python panels or operators), so the panel has a key box: a text field that,
once clicked, takes the keys. Every character typed into it is a key. The App
sends the box's whole text (at most every 250 ms, sometimes twice): the server
keeps what it has already seen and applies only the characters added since,
so keys typed faster than the App sends them are applied in order, none twice.
Clearing the box starts afresh. The loop's position is kept on the server too
(an execution store), since the App's copy of the panel state may lag. The
buttons do the same with the mouse (and with Tab and Enter).
"""

from __future__ import annotations

import threading
from typing import Optional

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import review, review_loop
from .review_loop import KEYS, Position, ReviewProgress
from .run_records import list_annotation_runs

KEY_BOX = "keys"
"""The panel state path of the key box."""
STORE = "gemini_review_panel"
"""The execution store keeping each panel's position in the loop, on the server."""
_LOCK = threading.RLock()
"""One key at a time: events of a panel may arrive together."""


def _runs(ctx) -> dict[str, str]:
    """Run key → its label field, for the runs whose field is still there, newest first."""
    found = {}
    for key in reversed(list_annotation_runs(ctx.dataset)):
        label_field = ctx.dataset.get_run_info(key).config.label_field
        if ctx.dataset.has_field(label_field):
            found[key] = label_field
    return found


def _percent(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def progress_markdown(progress: ReviewProgress) -> str:
    """The counts of the panel as Markdown: progress, precision, statuses, classes."""
    decided = progress.statuses.get(review.ACCEPTED, 0) + progress.statuses.get(review.REJECTED, 0)
    interval = "" if progress.interval is None else \
        f" (95 % interval {_percent(progress.interval[0])}–{_percent(progress.interval[1])})"
    statuses = [s for s in review.REVIEW_STATUSES if progress.statuses.get(s)]
    lines = [
        f"**{progress.reviewed_samples} of {progress.samples} samples reviewed**",
        "",
        f"Precision so far: **{_percent(progress.precision)}** of {decided} decided{interval}",
        "",
        "Labels: " + " · ".join(f"**{progress.statuses[s]}** {s}" for s in statuses),
        "",
        "| class | " + " | ".join(statuses) + " |",
        "|---|" + "---:|" * len(statuses),
        *(f"| {name} | " + " | ".join(str(row.get(s, 0)) for s in statuses) + " |"
          for name, row in progress.by_class.items()),
    ]
    return "\n".join(lines)


class GeminiReviewPanel(foo.Panel):
    """Review Gemini's labels one by one with the keyboard, least sure first."""

    @property
    def config(self):
        return foo.PanelConfig(
            name="gemini_review",
            label="Gemini review",
            icon="fact_check",
            surfaces="grid",
            help_markdown="Decide Gemini's labels one at a time, least sure first. Click the key box, then: "
                          + ", ".join(f"`{k}` {what}" for k, what in KEYS.items()) + ".",
        )

    # state: run, position (sample_id, label_id, skipped), shown (the sample the grid shows), message

    def on_load(self, ctx):
        runs = _runs(ctx)
        run = ctx.panel.state.run if ctx.panel.state.run in runs else next(iter(runs), None)
        ctx.panel.state.run = run
        if run is not None:
            with _LOCK:
                position = self._position(ctx)
                self._go(ctx, review_loop.resume(ctx.dataset, runs[run], position), "")

    def on_change_run(self, ctx):
        ctx.panel.state.run = ctx.params.get("value") or ctx.panel.state.run
        field = self._field(ctx)
        if field is not None:
            with _LOCK:
                self._go(ctx, review_loop.start(ctx.dataset, field), "")

    def on_keys(self, ctx):
        typed = ctx.params.get("value") or ""
        with _LOCK:
            store = ctx.store(STORE)
            seen_key = f"{ctx.panel.id}:typed"
            seen = store.get(seen_key) or ""
            if not typed or not typed.startswith(seen):
                # cleared: start afresh; shorter or edited: a late event, or an edit, nothing new
                if not typed:
                    store.set(seen_key, "")
                return
            store.set(seen_key, typed)
            self._keys(ctx, typed[len(seen):])

    def on_accept(self, ctx):
        self._keys(ctx, review_loop.ACCEPT)

    def on_reject(self, ctx):
        self._keys(ctx, review_loop.REJECT)

    def on_edit(self, ctx):
        self._keys(ctx, review_loop.EDIT)

    def on_next(self, ctx):
        self._keys(ctx, review_loop.NEXT)

    def on_accept_rest(self, ctx):
        self._keys(ctx, review_loop.ACCEPT_REST)

    # the loop

    def _field(self, ctx) -> Optional[str]:
        return _runs(ctx).get(ctx.panel.state.run)

    def _position(self, ctx) -> Position:
        """Where the loop is: as stored on the server, else as the panel state says."""
        stored = self._stored(ctx)
        if stored is not None:
            return stored
        state = ctx.panel.state.position or {}
        return Position(state.get("sample_id"), state.get("label_id"), tuple(state.get("skipped") or ()))

    @staticmethod
    def _store_key(ctx) -> str:
        return f"{ctx.panel.id}:{ctx.panel.state.run}"

    def _stored(self, ctx) -> Optional[Position]:
        state = ctx.store(STORE).get(self._store_key(ctx))
        return None if state is None else Position(state["sample_id"], state["label_id"], tuple(state["skipped"]))

    @staticmethod
    def _state_of(position: Position) -> dict:
        return {"sample_id": position.sample_id, "label_id": position.label_id, "skipped": list(position.skipped)}

    def _keys(self, ctx, keys: str) -> None:
        """Applies keys where the loop is (kept on the server: the App's copy of the panel state may lag)."""
        field = self._field(ctx)
        if field is None or not keys:
            return
        with _LOCK:
            last, steps = review_loop.press_keys(ctx.dataset, field, self._position(ctx), keys)
            if not steps:
                return
            self._go(ctx, last.position, " · ".join(step.message for step in steps))
        edit = next((step.edit for step in reversed(steps) if step.edit), None)
        if edit is not None:
            sample_id, label_id = edit
            ctx.trigger("annotate", {"id": sample_id, "field_path": field, "label_id": label_id})

    def _go(self, ctx, position: Position, message: str) -> None:
        """Stores ``position`` and shows it in the App: the sample in the grid, the label selected."""
        field = self._field(ctx)
        state = self._state_of(position)
        ctx.store(STORE).set(self._store_key(ctx), state)
        ctx.panel.state.position = state
        ctx.panel.state.message = message
        if position.sample_id is None:
            ctx.ops.set_view(view=review.review_queue(ctx.dataset, field))
            ctx.panel.state.shown = None
            return
        if ctx.panel.state.shown != position.sample_id:  # a new sample: the grid shows it alone
            ctx.ops.show_samples([position.sample_id])
            ctx.panel.state.shown = position.sample_id
        else:  # the same sample: redraw its labels with their new statuses
            ctx.ops.reload_samples()

    # the panel

    def render(self, ctx):
        panel = types.Object()
        runs = _runs(ctx)
        if not runs:
            panel.md("No Gemini run in this dataset yet: run **Annotate with Gemini** first.", name="empty")
            return types.Property(panel, view=types.GridView(orientation="vertical"))
        choices = types.DropdownView()
        for key, label_field in runs.items():
            choices.add_choice(key, label=f"{key} → {label_field}")
        panel.enum("run", choices.values(), default=ctx.panel.state.run, label="Run", view=choices,
                   on_change=self.on_change_run)
        field = runs.get(ctx.panel.state.run)
        if field is None:
            return types.Property(panel, view=types.GridView(orientation="vertical"))
        position = self._position(ctx)
        panel.md(self._current_markdown(ctx, field, position), name="current")
        panel.str(KEY_BOX, label="Key box: click here, then type",
                  description=" · ".join(f"{k} {what}" for k, what in KEYS.items()), on_change=self.on_keys)
        buttons = panel.h_stack("actions", align_x="left", gap=1)
        buttons.btn("accept", label="Accept (a)", on_click=self.on_accept, variant="contained")
        buttons.btn("reject", label="Reject (r)", on_click=self.on_reject, variant="outlined")
        buttons.btn("edit", label="Edit (e)", on_click=self.on_edit, variant="outlined")
        buttons.btn("next", label="Next sample (n)", on_click=self.on_next, variant="outlined")
        buttons.btn("accept_rest", label="Accept the rest (A)", on_click=self.on_accept_rest, variant="outlined")
        if ctx.panel.state.message:
            panel.md(f"_{ctx.panel.state.message}_", name="message")
        panel.md(progress_markdown(review_loop.review_progress(ctx.dataset, field)), name="progress")
        panel.md(self._upcoming_markdown(ctx, field, position), name="upcoming")
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1, px=2, py=1))

    @staticmethod
    def _current_markdown(ctx, field: str, position: Position) -> str:
        if position.sample_id is None:
            return "**Nothing left to review** in this run" + (
                f" ({len(position.skipped)} sample(s) left for later: pick the run again to see them)"
                if position.skipped else ".")
        waiting = review_loop.waiting_labels(ctx.dataset, field, position.sample_id)
        filepath = ctx.dataset[position.sample_id].filepath
        lines = [f"**Sample** `{position.sample_id}` ({filepath.rsplit('/', 1)[-1]}): "
                 f"{len(waiting)} label(s) to decide"]
        label = next((label for label in waiting if label.id == position.label_id), None)
        if label is None:
            lines.append("No label left to decide here: **a** marks the sample reviewed.")
        else:
            confidence = review.label_confidence(label)
            sure = "no confidence" if confidence is None else f"confidence {confidence:.2f}"
            lines.append(f"**Label** `{label.id}`: **{label.label}**, {sure}, {review.review_status(label)}")
        others = [f"{other.label} ({'–' if review.label_confidence(other) is None else f'{review.label_confidence(other):.2f}'})"
                  for other in waiting if other is not label]
        if others:
            lines.append("Then: " + ", ".join(others))
        return "\n\n".join(lines)

    @staticmethod
    def _upcoming_markdown(ctx, field: str, position: Position) -> str:
        rows = review_loop.upcoming(ctx.dataset, field, position)
        if not rows:
            return ""
        names = dict(zip(*ctx.dataset.select([i for i, _ in rows]).values(["id", "filepath"])))
        lines = ["**Next, least sure first**", "", "| sample | expected mistakes |", "|---|---:|"]
        lines += [f"| {names[i].rsplit('/', 1)[-1]} | {m:.2f} |" for i, m in rows]
        return "\n".join(lines)
