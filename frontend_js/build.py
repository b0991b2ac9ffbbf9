"""Build the served snippet: frontend_js/snippet.js → frontend_js/dist/*.min.js.

    python -m frontend_js.build           # write dist/
    python -m frontend_js.build --check   # exit 1 if dist/ is not what the source builds to

Reproducible and Python-only (calmjs.parse, pinned in requirements-test.txt),
so serving needs neither Node.js nor the minifier: dist/ is committed and a
test rebuilds it and compares. One file per combination of optional features:
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
DIRECTIVE = re.compile(r"^\s*// @(if (\w+)|endif)\s*$")
IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


class BuildError(Exception):
    pass


def variant_name(features) -> str:
    """dist/ file of a feature set: snippet.min.js, snippet.consent.hide.min.js, ..."""
    return "".join(["snippet"] + [f".{f}" for f in sorted(features)] + [".min.js"])


def variants() -> list[frozenset]:
    return [frozenset(c) for n in range(len(FEATURES) + 1) for c in itertools.combinations(FEATURES, n)]


def preprocess(source: str, features) -> str:
    """Keep the lines of `// @if FEATURE` regions whose feature is on; regions may nest."""
    kept, stack = [], []
    for number, line in enumerate(source.splitlines(), 1):
        match = DIRECTIVE.match(line)
        if match and match.group(2):
            if match.group(2) not in FEATURES:
                raise BuildError(f"line {number}: unknown feature {match.group(2)!r}")
            stack.append(match.group(2) in features)
        elif match:
            if not stack:
                raise BuildError(f"line {number}: @endif without @if")
            stack.pop()
        elif all(stack):
            kept.append(line)
    if stack:
        raise BuildError("an @if region is not closed")
    return "\n".join(kept) + "\n"


def _without_unused_catch_bindings(tokens: list) -> list:
    """`catch(e){}` → `catch{}` (ES2019): an empty handler needs no binding."""
    kept, index = [], 0
    while index < len(tokens):
        window = [text for _, text in tokens[index : index + 6]]
        if len(window) == 6 and window[:2] == ["catch", "("] and window[3:] == [")", "{", "}"]:
            kept += [tokens[index], tokens[index + 4], tokens[index + 5]]
            index += 6
        else:
            kept.append(tokens[index])
            index += 1
    return kept


def _compact(code: str) -> str:
    """Re-join the minifier's tokens with no space but where two would merge,
    write true/false as !0/!1 (calmjs.parse leaves both to us) and drop unused
    catch bindings."""
    from calmjs.parse.lexers.es5 import Lexer

    lexer = Lexer()
    lexer.input(code)
    tokens = _without_unused_catch_bindings([(token.type, token.value) for token in lexer])
    out, previous = [], ("", "")
    for index, (kind, text) in enumerate(tokens):
        if kind in ("TRUE", "FALSE"):
            following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
            if following in (".", "[", "("):
                raise BuildError(f"{text}{following}: write it another way, !0{following} would change its meaning")
            text = "!0" if kind == "TRUE" else "!1"
        last = previous[1][-1:] if previous[1] else ""
        if last and (
            (last in IDENT_CHARS and text[0] in IDENT_CHARS)
            or (previous[0] == "REGEX" and text[0] in IDENT_CHARS)
            or (last in "+-" and text[0] == last)
        ):
            out.append(" ")
        out.append(text)
        previous = (kind, text)
    return "".join(out)


def minify(source: str) -> str:
    from calmjs.parse import es5
    from calmjs.parse.unparsers.es5 import minify_print

    code = minify_print(es5(source), obfuscate=True, obfuscate_globals=False, drop_semi=True)
    code = _compact(code)
    names = PLACEHOLDER.findall(code)
    if not names or len(names) != len(set(names)):
        raise BuildError("the built snippet must hold each of its __setting__ placeholders once")
    return code + "\n"


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
