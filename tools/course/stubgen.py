#!/usr/bin/env python3
"""Generates the learner stubs (week1/, week2/, ...) from the reference solution tree.

Every region of a reference header between
    // SOLUTION BEGIN ch1.1 Task 2
    // SOLUTION END
is replaced by one line `TINYLLM_TODO("ch1.1", "Task 2");` at the marker's indentation. Everything else is
copied as it is, so the committed stubs and the reference differ only inside the solution bodies. The result
goes through clang-format (with the repository's .clang-format), because a body cut down to one TODO line may
now fit on its signature's line; so the stubs pass the same format check as every other file.

The chapters are the ones declared in cmake/chapters.cmake (read by chapters.py): reference/<week>/<dir>/ of
each declared chapter makes <week>/<dir>/. A file under reference/ or a week folder that belongs to no declared
chapter is an error (declare the chapter first).

    python3 tools/course/stubgen.py            # write week*/ from reference/week*/
    python3 tools/course/stubgen.py --check    # exit 1 (and show a diff) if the committed stubs have drifted
Standard library only, plus the clang-format program (Debian's clang-format; CI checks formatting with it).
"""
import argparse
import difflib
import pathlib
import re
import shutil
import subprocess
import sys

import chapters

ROOT = pathlib.Path(__file__).resolve().parents[2]  # tools/course/stubgen.py -> the repository root
BEGIN = re.compile(r"^(?P<indent>\s*)// SOLUTION BEGIN (?P<chapter>ch\d+\.\d+) (?P<task>Task \d+)\s*$")
END = re.compile(r"^\s*// SOLUTION END\s*$")
TODO_INCLUDE = '#include "tinyllm/todo.hpp"'


class StubError(Exception):
    pass


def make_stub(text: str, where: str) -> str:
    out = []
    region = None  # (line number, chapter, task)
    regions = 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if region is None:
            if begin:
                region = (number, begin["chapter"], begin["task"])
                regions += 1
                out.append(f'{begin["indent"]}TINYLLM_TODO("{begin["chapter"]}", "{begin["task"]}");\n')
            elif end:
                raise StubError(f"{where}:{number}: SOLUTION END without SOLUTION BEGIN")
            elif "SOLUTION" in line and "//" in line:
                raise StubError(f"{where}:{number}: malformed SOLUTION marker: {line.strip()}")
            else:
                out.append(line)
        else:
            if begin:
                raise StubError(f"{where}:{number}: nested SOLUTION BEGIN (region opened at line {region[0]})")
            if end:
                region = None
    if region is not None:
        raise StubError(f"{where}:{region[0]}: SOLUTION BEGIN {region[1]} {region[2]} is never closed")
    if regions and TODO_INCLUDE not in text:
        raise StubError(f"{where}: has solution regions but does not {TODO_INCLUDE}")
    return "".join(out)


def clang_format(text: str, path: pathlib.Path) -> str:
    program = shutil.which("clang-format")
    if program is None:
        raise StubError("clang-format is not installed (apt-get install clang-format); the stubs are formatted with it")
    result = subprocess.run([program, f"--assume-filename={path}"], input=text, capture_output=True, text=True,
                            cwd=ROOT, check=False)
    if result.returncode != 0:
        raise StubError(f"clang-format failed on {path}: {result.stderr.strip()}")
    return result.stdout


def expected_stubs(chapter_list) -> dict:
    """Learner path -> the text generated from its reference file, for every declared chapter."""
    stubs = {}
    chapter_dirs = [ROOT / c.reference_dir for c in chapter_list]
    for source in sorted((ROOT / "reference").glob("**/*")):
        if source.is_file() and not any(d in source.parents for d in chapter_dirs):
            raise StubError(f"{source.relative_to(ROOT)} belongs to no chapter declared in {chapters.DECLARATION}")
    for chapter_dir in chapter_dirs:
        if not chapter_dir.is_dir():
            raise StubError(f"{chapter_dir.relative_to(ROOT)} does not exist (declared in {chapters.DECLARATION})")
        for source in sorted(chapter_dir.glob("**/*")):
            if not source.is_file():
                continue
            relative = source.relative_to(ROOT / "reference")
            text = source.read_text(encoding="utf-8")
            if source.suffix in (".hpp", ".h", ".cpp"):
                text = clang_format(make_stub(text, str(source.relative_to(ROOT))), ROOT / relative)
            stubs[ROOT / relative] = text
    return stubs


def learner_files(chapter_list) -> set:
    """Every file in the week folders of the declared chapters (a week's README.md aside)."""
    return {p for week in chapters.weeks(chapter_list) for p in (ROOT / week).glob("**/*")
            if p.is_file() and p.name != "README.md"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    try:
        chapter_list = chapters.declared()
        stubs = expected_stubs(chapter_list)
    except (StubError, chapters.DeclarationError) as error:
        print(f"stubgen: {error}", file=sys.stderr)
        return 2
    drift = 0
    for path, text in stubs.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            drift += 1
            shown = path.relative_to(ROOT)
            print(f"stubgen: {shown} differs from what reference/{shown} generates:")
            sys.stdout.writelines(difflib.unified_diff((current or "").splitlines(keepends=True),
                                                       text.splitlines(keepends=True),
                                                       f"committed/{shown}", f"generated/{shown}"))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"stubgen: wrote {path.relative_to(ROOT)}")
    for extra in sorted(learner_files(chapter_list) - set(stubs)):
        drift += 1
        print(f"stubgen: {extra.relative_to(ROOT)} has no counterpart in reference/")
    if args.check:
        if drift:
            print(f"stubgen: {drift} file(s) drifted; run `python3 tools/course/stubgen.py` and commit the result")
            return 1
        print(f"stubgen: {len(stubs)} stub file(s) match the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
