#!/usr/bin/env python3
"""The course's chapters, read from their one declaration: the tinyllm_chapter(...) calls of cmake/chapters.cmake.

The course tools (stubgen.py, redgate.py, grade.py, diff.py) take their chapter list from here, so a new chapter is
declared once, in CMake, and no tool keeps a list of its own. No build directory is needed; where the tree a
chapter comes from matters (the red gate, the grading manifest), from_build() reads build/<preset>/chapters.json
and checks it against the declaration.

    python3 tools/course/chapters.py            # the declared chapters, one line each
    python3 tools/course/chapters.py --check    # exit 1 unless DEPENDS = the chapters each one's headers include

    import chapters                             # from a script in tools/course/
    for chapter in chapters.declared(): print(chapter.id, chapter.week, chapter.dir, chapter.title, chapter.depends)
Standard library only.
"""
import argparse
import dataclasses
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]  # tools/course/chapters.py -> the repository root
DECLARATION = pathlib.Path("cmake") / "chapters.cmake"
# CMake tokens: a comment, a quoted argument, an unquoted argument, a parenthesis.
TOKEN = re.compile(r'(?P<comment>#[^\n]*)|"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<paren>[()])|(?P<word>[^\s()"#]+)|\s+')
CHAPTER_ID = re.compile(r"ch\d+\.\d+")
INCLUDE = re.compile(r"^\s*#\s*include\s*<tinyllm/(?P<dir>[^/>]+)/", re.MULTILINE)


class DeclarationError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Chapter:
    id: str  # "ch1.3": labels, TODO messages, --chapters
    week: str  # "week1"
    dir: str  # "ch1_3_gqa": folders, targets, files
    title: str
    depends: tuple = ()  # chapter ids

    @property
    def learner_dir(self) -> pathlib.Path:
        """The stub folder, relative to the repository root: week1/ch1_3_gqa."""
        return pathlib.Path(self.week) / self.dir

    @property
    def reference_dir(self) -> pathlib.Path:
        """The solved folder, relative to the repository root: reference/week1/ch1_3_gqa."""
        return pathlib.Path("reference") / self.week / self.dir

    @property
    def test_target(self) -> str:
        return "test_" + self.dir


def _tokens(text: str, where: str):
    pos = 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None:
            line = text.count("\n", 0, pos) + 1
            raise DeclarationError(f"{where}:{line}: cannot read {text[pos:pos + 20]!r}")
        pos = match.end()
        if match["quoted"] is not None:
            yield "arg", match["quoted"].replace('\\"', '"').replace("\\\\", "\\"), match.start()
        elif match["word"] is not None:
            yield "arg", match["word"], match.start()
        elif match["paren"] is not None:
            yield match["paren"], match["paren"], match.start()


def parse(text: str, where: str = str(DECLARATION)) -> list:
    """The chapters of a chapters.cmake text, in declaration order; DeclarationError for anything CMake's
    tinyllm_chapter() would reject (unknown keyword, missing WEEK/DIR/TITLE, a duplicate id, a dependency that
    is not declared above)."""
    tokens = list(_tokens(text, where))
    chapters, seen = [], {}
    i = 0
    while i < len(tokens):
        kind, value, start = tokens[i]
        line = text.count("\n", 0, start) + 1
        if kind != "arg" or i + 1 >= len(tokens) or tokens[i + 1][0] != "(":
            raise DeclarationError(f"{where}:{line}: expected a command, found {value!r}")
        try:
            close = next(j for j in range(i + 2, len(tokens)) if tokens[j][0] in "()")
        except StopIteration:
            raise DeclarationError(f"{where}:{line}: {value}( is never closed") from None
        if tokens[close][0] != ")":
            raise DeclarationError(f"{where}:{line}: nested parentheses in {value}(...)")
        args = [tok[1] for tok in tokens[i + 2:close]]
        i = close + 1
        if value != "tinyllm_chapter":
            raise DeclarationError(f"{where}:{line}: only tinyllm_chapter(...) calls belong here, found {value}()")
        if not args or not CHAPTER_ID.fullmatch(args[0]):
            raise DeclarationError(f"{where}:{line}: tinyllm_chapter needs a chapter id like ch1.1 first")
        cid, fields, depends, key = args[0], {}, [], None
        for arg in args[1:]:
            if arg in ("WEEK", "DIR", "TITLE", "DEPENDS"):
                if arg in fields or (arg == "DEPENDS" and key == "DEPENDS"):
                    raise DeclarationError(f"{where}:{line}: {cid}: {arg} given twice")
                key = arg
                if arg != "DEPENDS":
                    fields[arg] = None
            elif key in ("WEEK", "DIR", "TITLE") and fields[key] is None:
                fields[key] = arg
            elif key == "DEPENDS":
                depends.append(arg)
            else:
                raise DeclarationError(f"{where}:{line}: {cid}: unexpected argument {arg!r}")
        missing = [k for k in ("WEEK", "DIR", "TITLE") if not fields.get(k)]
        if missing:
            raise DeclarationError(f"{where}:{line}: {cid}: missing {', '.join(missing)}")
        if cid in seen:
            raise DeclarationError(f"{where}:{line}: {cid} is declared twice")
        for dep in depends:
            if dep not in seen:
                raise DeclarationError(f"{where}:{line}: {cid} depends on {dep}, which is not declared before it")
        chapter = Chapter(cid, fields["WEEK"], fields["DIR"], fields["TITLE"], tuple(depends))
        seen[cid] = chapter
        chapters.append(chapter)
    return chapters


def declared(root: pathlib.Path = ROOT) -> list:
    """The chapters declared in <root>/cmake/chapters.cmake, in order."""
    path = pathlib.Path(root) / DECLARATION
    return parse(path.read_text(encoding="utf-8"), str(DECLARATION))


def weeks(chapter_list) -> list:
    """The weeks of these chapters, in order of first appearance: ["week1", "week2"]."""
    return list(dict.fromkeys(c.week for c in chapter_list))


def select(chapter_list, ids=None, week_names=None) -> list:
    """The chapters among chapter_list with an id in `ids` and a week in `week_names` (None: no filter).
    Raises ValueError naming an id or week that no chapter has."""
    for wanted, known, what in ((ids, [c.id for c in chapter_list], "chapter"),
                                (week_names, weeks(chapter_list), "week")):
        unknown = sorted(set(wanted or ()) - set(known))
        if unknown:
            raise ValueError(f"no {what} {', '.join(unknown)} in {DECLARATION} (declared: {', '.join(known)})")
    return [c for c in chapter_list
            if (ids is None or c.id in ids) and (week_names is None or c.week in week_names)]


def split_list(text):
    """"a,b" -> ["a", "b"]; None stays None."""
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def from_build(build_dir: pathlib.Path, root: pathlib.Path = ROOT) -> list:
    """The entries of build_dir/chapters.json (written at configure time: id, week, dir, tree, title), after
    checking that they are the declared chapters, so that a build configured before a chapter was added or
    renamed is not mistaken for the course."""
    path = pathlib.Path(build_dir) / "chapters.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: configure that build first (cmake --preset ...)")
    built = json.loads(path.read_text())
    want = [(c.id, c.week, c.dir, c.title) for c in declared(root)]
    have = [(c["id"], c["week"], c["dir"], c["title"]) for c in built]
    if have != want:
        raise SystemExit(f"{path} does not match {DECLARATION}: re-run the configure step of that build")
    return built


def included_chapters(chapter: Chapter, chapter_list, root: pathlib.Path = ROOT) -> dict:
    """Chapter ids whose headers this chapter's headers #include (<tinyllm/<dir>/...>), in either tree -> the
    files that include them."""
    by_dir = {c.dir: c.id for c in chapter_list}
    found: dict = {}
    for tree_dir in (chapter.reference_dir, chapter.learner_dir):
        for header in sorted((pathlib.Path(root) / tree_dir).glob("*.hpp")):
            for match in INCLUDE.finditer(header.read_text(encoding="utf-8")):
                other = by_dir.get(match["dir"])
                if other is None:
                    raise DeclarationError(f"{tree_dir / header.name} includes <tinyllm/{match['dir']}/...>, "
                                           f"which is no declared chapter")
                if other != chapter.id:
                    found.setdefault(other, []).append(str(tree_dir / header.name))
    return found


def check_depends(chapter_list, root: pathlib.Path = ROOT) -> list:
    """Problems (strings) where a chapter's DEPENDS is not exactly the chapters its headers include."""
    problems = []
    order = [c.id for c in chapter_list]
    for chapter in chapter_list:
        included = included_chapters(chapter, chapter_list, root)
        if set(chapter.depends) != set(included):
            wanted = " ".join(sorted(included, key=order.index))
            fix = f"make it DEPENDS {wanted}" if wanted else "drop its DEPENDS"
            problems.append(f"{chapter.id}: DEPENDS {' '.join(chapter.depends) or '(none)'}, but its headers include "
                            f"{wanted or 'no other chapter'}: {fix}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="check the declaration: both trees exist, DEPENDS = the included chapters")
    args = parser.parse_args()
    try:
        chapter_list = declared()
        if not args.check:
            for c in chapter_list:
                print(f"{c.id:6} {c.week:6} {c.dir:32} {c.title}"
                      + (f"  (depends on {', '.join(c.depends)})" if c.depends else ""))
            return 0
        problems = [f"{c.id}: {d} does not exist" for c in chapter_list for d in (c.reference_dir, c.learner_dir)
                    if not (ROOT / d).is_dir()]
        problems += check_depends(chapter_list)
    except DeclarationError as error:
        print(f"chapters: {error}", file=sys.stderr)
        return 2
    if problems:
        print(f"chapters: {DECLARATION} does not match the chapter headers:\n  " + "\n  ".join(problems))
        return 1
    print(f"chapters: {len(chapter_list)} chapters declared; each one's DEPENDS are the chapters its headers include")
    return 0


if __name__ == "__main__":
    sys.exit(main())
