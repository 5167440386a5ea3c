#!/usr/bin/env python3
"""The red gate: on the pristine stubs, every chapter test must fail, and fail because of the chapter's TODO.

    cmake --preset learner -DTINYLLM_REDGATE=ON && cmake --build --preset learner
    python3 tools/course/redgate.py [--build-dir build/learner] [--weeks week1,week2]

For each chapter declared in cmake/chapters.cmake (as the build saw it: build/<preset>/chapters.json, which also
says which tree each chapter was built from, and must match the declaration), it runs the chapter's tests
and checks that (1) the chapter has tests, (2) none of them passes, (3) each failure message names a TODO of
this chapter or of a chapter it builds on ("TODO(ch1."). Then it runs the meta test (label `redgate`), which
calls every public stub directly and must pass. Standard library only.
"""
import argparse
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import chapters

ROOT = pathlib.Path(__file__).resolve().parents[2]  # tools/course/redgate.py -> the repository root


def run_ctest(build_dir: pathlib.Path, label: str, junit: pathlib.Path) -> ET.Element:
    subprocess.run(["ctest", "--test-dir", str(build_dir), "-L", label, "-j2", "--timeout", "300",
                    "--output-junit", str(junit)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    if not junit.exists():
        raise SystemExit(f"redgate: ctest wrote no {junit}")
    return ET.parse(junit).getroot()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=str(ROOT / "build" / "learner"))
    parser.add_argument("--weeks", help="comma-separated weeks, e.g. week1 (default: every declared week)")
    args = parser.parse_args()
    build_dir = pathlib.Path(args.build_dir).resolve()
    built = chapters.from_build(build_dir)
    try:
        wanted = {c.id for c in chapters.select(chapters.declared(), week_names=chapters.split_list(args.weeks))}
    except ValueError as error:
        raise SystemExit(f"redgate: {error}")
    problems = []
    for chapter in built:
        if chapter["id"] not in wanted:
            continue
        cid = chapter["id"]
        if chapter["tree"] != "learner":
            problems.append(f"{cid}: configured from the reference tree; run the red gate on a pristine learner build")
            continue
        root = run_ctest(build_dir, "^" + re.escape(cid) + "$", build_dir / f"redgate-{cid}.xml")
        cases = root.findall(".//testcase")
        if not cases:
            problems.append(f"{cid}: has no tests")
            continue
        week_prefix = "TODO(ch" + cid[2:].split(".")[0] + "."
        passed, wrong_reason = [], []
        for case in cases:
            status = case.get("status", "")
            output = "".join(node.text or "" for node in case.iter() if node.tag in ("system-out", "failure"))
            if status in ("run", "passed", "") and case.find("failure") is None and case.find("skipped") is None:
                passed.append(case.get("name"))
            elif week_prefix not in output and "TODO(ch" not in output:
                wrong_reason.append(case.get("name"))
        print(f"redgate: {cid}: {len(cases)} tests, {len(passed)} passed on the stubs, "
              f"{len(wrong_reason)} failed without a TODO message")
        problems += [f"{cid}: {name} PASSES on the pristine stubs" for name in passed]
        problems += [f"{cid}: {name} fails, but not with a TODO(...) message" for name in wrong_reason]
    meta = run_ctest(build_dir, "^redgate$", build_dir / "redgate-meta.xml")
    meta_cases = meta.findall(".//testcase")
    meta_failed = [c.get("name") for c in meta_cases if c.find("failure") is not None or c.get("status") == "fail"]
    print(f"redgate: meta test: {len(meta_cases)} stub checks, {len(meta_failed)} failed")
    if not meta_cases:
        problems.append("the meta test (label redgate) did not run")
    problems += [f"meta: {name} failed (a public stub does not throw NotImplemented naming its chapter)"
                 for name in meta_failed]
    if problems:
        print("redgate: FAILED\n  " + "\n  ".join(problems))
        return 1
    print("redgate: every chapter test fails on the stubs with its TODO message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
