"""Build the served snippet: frontend_js/snippet.js → frontend_js/dist/*.min.js.

    python -m frontend_js.build           # write dist/
    python -m frontend_js.build --check   # exit 1 if dist/ is not what the source builds to

Reproducible and Python-only (tdewolff's minifier through its Python wheel,
pinned in requirements-test.txt), so serving needs neither Node.js nor the
minifier: dist/ is committed and a test rebuilds it and compares. One file per combination of optional features:
the lines between `// @if FEATURE` and `// @endif` in the source go only into
the variants with that feature, so a site is served only the code its
settings need (and the common case stays inside the size budget).
"""

import argparse
import itertools
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "snippet.js"
DIST = HERE / "dist"
FEATURES = ("consent", "hide", "report", "shadow")
# A site's setting in the source: `__name__`, replaced by its JSON value.
PLACEHOLDER = re.compile(r"\b__([a-z]+)__\b")
DIRECTIVE = re.compile(r"^\s*// @(if (\w+)|else|endif)\s*$")


class BuildError(Exception):
    pass


def variant_name(features) -> str:
    """dist/ file of a feature set: snippet.min.js, snippet.consent.hide.min.js, ..."""
    return "".join(["snippet"] + [f".{f}" for f in sorted(features)] + [".min.js"])


def variants() -> list[frozenset]:
    return [frozenset(c) for n in range(len(FEATURES) + 1) for c in itertools.combinations(FEATURES, n)]


def preprocess(source: str, features) -> str:
    """Keep the lines of `// @if FEATURE` regions whose feature is on (and of
    their `// @else` part when it is off); regions may nest."""
    kept, stack, has_else = [], [], []
    for number, line in enumerate(source.splitlines(), 1):
        match = DIRECTIVE.match(line)
        if match and match.group(2):
            if match.group(2) not in FEATURES:
                raise BuildError(f"line {number}: unknown feature {match.group(2)!r}")
            stack.append(match.group(2) in features)
            has_else.append(False)
        elif match and match.group(1) == "else":
            if not stack or has_else[-1]:
                raise BuildError(f"line {number}: @else without @if")
            stack[-1], has_else[-1] = not stack[-1], True
        elif match:
            if not stack:
                raise BuildError(f"line {number}: @endif without @if")
            stack.pop()
            has_else.pop()
        elif all(stack):
            kept.append(line)
    if stack:
        raise BuildError("an @if region is not closed")
    return "\n".join(kept) + "\n"


def minify(source: str) -> str:
    """The source minified by tdewolff's minifier (its Python wheel, pinned in
    requirements-test.txt): it reads what browsers run today, renames the
    locals, and leaves the __setting__ placeholders alone (they are globals
    to it)."""
    import minify as tdewolff  # only the build needs it, not serving

    try:
        code = tdewolff.string("application/javascript", source)
    except tdewolff.MinifyError as failure:
        raise BuildError(f"the minifier refused the source: {failure}") from None
    names = PLACEHOLDER.findall(code)
    if not names or len(names) != len(set(names)):
        raise BuildError("the built snippet must hold each of its __setting__ placeholders once")
    return code  # (no newline at the end: a byte every page would download)


def placeholders(code: str) -> list[str]:
    """The settings a built variant expects, in order."""
    return PLACEHOLDER.findall(code)


def render(code: str, values: dict) -> str:
    """The built variant with each placeholder replaced by its setting's JSON
    value (KeyError for a setting that `values` lacks)."""
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], code)


def build() -> dict[str, str]:
    """Every variant's file name → its text."""
    source = SOURCE.read_text()
    return {variant_name(features): minify(preprocess(source, features)) for features in variants()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with dist/ instead of writing it")
    args = parser.parse_args(argv)
    built = build()
    if args.check:
        stale = [
            name for name, text in built.items() if not (DIST / name).is_file() or (DIST / name).read_text() != text
        ]
        for name in stale:
            print(f"dist/{name} is out of date: run python -m frontend_js.build", file=sys.stderr)
        return 1 if stale else 0
    DIST.mkdir(exist_ok=True)
    for name, text in built.items():
        (DIST / name).write_text(text)
        print(f"wrote frontend_js/dist/{name} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
