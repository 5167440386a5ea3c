#!/usr/bin/env python3
"""The instructor diff: a learner's chapter files against the reference solution, chapter by chapter, with both
sides normalised by clang-format (the repository's .clang-format), so only what differs in substance shows.

    python3 tools/course/diff.py                                 # this checkout's week*/ against reference/
    python3 tools/course/diff.py --work ~/their-tiny-llm --chapters ch1.3
    python3 tools/course/diff.py --work ~/their-tiny-llm --stat  # one line per chapter: files and lines changed

On a pristine checkout the diff shows exactly the solution bodies (each stub's TINYLLM_TODO line against the
reference's solved region). Chapters come from cmake/chapters.cmake (chapters.py). Standard library and
clang-format only.
"""
import argparse
import difflib
import pathlib
import shutil
import signal
import subprocess
import sys

import chapters

ROOT = pathlib.Path(__file__).resolve().parents[2]  # tools/course/diff.py -> the repository root


def formatted(path: pathlib.Path) -> list:
    """The file's lines after clang-format with the repository's style ([] if it does not exist)."""
    if not path.is_file():
        return []
    out = subprocess.run(["clang-format", "--style=file", f"--assume-filename={ROOT / path.name}"],
                         input=path.read_text(), capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.splitlines(keepends=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT), help="the learner's checkout (default: this one)")
    parser.add_argument("--chapters", help="comma-separated chapter ids, e.g. ch1.1,ch2.1")
    parser.add_argument("--stat", action="store_true", help="only count the changed lines per chapter")
    args = parser.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head or less
    if shutil.which("clang-format") is None:
        raise SystemExit("diff: clang-format is not installed (bash tools/setup.sh installs it)")
    work = pathlib.Path(args.work).resolve()
    try:
        selected = chapters.select(chapters.declared(), chapters.split_list(args.chapters))
    except ValueError as error:
        raise SystemExit(f"diff: {error}")
    for chapter in selected:
        relative_dir = chapter.learner_dir
        files = sorted(p.name for p in (ROOT / "reference" / relative_dir).glob("*") if p.is_file())
        added = removed = changed_files = 0
        for name in files:
            reference = formatted(ROOT / "reference" / relative_dir / name)
            theirs = formatted(work / relative_dir / name)
            lines = list(difflib.unified_diff(reference, theirs, f"reference/{relative_dir}/{name}",
                                              f"{relative_dir}/{name}", n=2))
            if not lines:
                continue
            changed_files += 1
            added += sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
            removed += sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
            if not args.stat:
                sys.stdout.writelines(line if line.endswith("\n") else line + "\n" for line in lines)
        if args.stat:
            print(f"{chapter.id:6} {chapter.title[:36]:36} {changed_files} of {len(files)} files, "
                  f"+{added} -{removed} lines against the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
