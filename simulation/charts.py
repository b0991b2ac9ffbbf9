"""The curve of accuracy against pool size as CSV and PNG files (the
pool page draws its own, from the cached result)."""

import csv
from pathlib import Path

from django.utils.translation import gettext

from .services import Point

CSV_FIELDS = (
    "size",
    "hold_minutes",
    "letters",
    "correct_visitor",
    "correct_source",
    "wrong_visitor",
    "wrong_source",
    "unknown",
    "exhaustions",
    "taken_over",
    "visitor_accuracy",
    "source_accuracy",
)


def write_csv(points: list[Point], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for p in points:
            v = p.verdicts
            writer.writerow(
                [
                    p.size,
                    p.hold,
                    v.letters,
                    v.correct_visitor,
                    v.correct_source,
                    v.wrong_visitor,
                    v.wrong_source,
                    v.unknown,
                    v.exhaustions,
                    v.taken_over,
                    f"{v.visitor_accuracy:.4f}",
                    f"{v.source_accuracy:.4f}",
                ]
            )


def write_png(points: list[Point], path: Path, target: float, recommended: int | None, title: str) -> None:
    """Accuracy (correct visitors, correct sources) against pool size, one
    line per hold, the target and the recommended size marked."""
    import matplotlib  # noqa: PLC0415 - heavy, and only the command draws PNGs

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    figure, axes = pyplot.subplots(figsize=(8, 5), dpi=100)
    for hold in sorted({p.hold for p in points}):
        line = sorted((p for p in points if p.hold == hold), key=lambda p: p.size)
        sizes = [p.size for p in line]
        axes.plot(sizes, [p.verdicts.visitor_accuracy * 100 for p in line], marker="o", label=_hold_label(hold, "v"))
        axes.plot(sizes, [p.verdicts.source_accuracy * 100 for p in line], linestyle="--", label=_hold_label(hold, "s"))
    axes.axhline(target * 100, color="#ba2121", linestyle=":", label=gettext("target"))
    if recommended:
        axes.axvline(recommended, color="#417690", linestyle=":", label=gettext("recommended size"))
    axes.set_xlabel(gettext("pool size (addresses)"))
    axes.set_ylabel(gettext("letters credited correctly, per cent"))
    axes.set_title(title)
    if len({p.size for p in points}) > 2 and max(p.size for p in points) > 20 * min(p.size for p in points):
        axes.set_xscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def _hold_label(hold: int, what: str) -> str:
    if what == "v":
        return gettext("correct visitor, hold %(hold)s min") % {"hold": hold}
    return gettext("correct source, hold %(hold)s min") % {"hold": hold}
