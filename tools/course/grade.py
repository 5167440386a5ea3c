#!/usr/bin/env python3
"""The grader: builds a learner's chapter files on a pristine copy of the course, one chapter at a time, and scores
each chapter's tests against the manifest of tests the reference passes.

    python3 tools/course/grade.py                        # grade this checkout's week*/ files, every chapter
    python3 tools/course/grade.py --week week1 --json grade.json
    python3 tools/course/grade.py --work ~/their-tiny-llm --chapters ch1.1,ch1.3
    python3 tools/course/grade.py --write-manifest --build-dir build/reference   # instructors: refresh the manifest
    python3 tools/course/grade.py --check-manifest --build-dir build/reference   # CI: the manifest is up to date

How it grades:
  1. the pristine tree is the course as committed (`git archive HEAD` of the repository this script lives in,
     without data/, which is linked);
  2. only learner-owned files are taken from --work: the chapter headers in <week>/<dir>/ of every chapter
     declared in cmake/chapters.cmake (the files the stubs have). Tests, core, CMake and fixtures stay pristine,
     so an edited test changes nothing;
  3. one build directory (learner tree, Debug, ASan+UBSan unless --no-sanitize, warnings not fatal); each
     chapter's test executable is built as its own target, so a chapter that does not compile fails alone
     (chapters that include it fail too: they cannot be built without it);
  4. each chapter's tests run with ctest (JUnit output) and are joined with tests/manifest.json: a test of the
     manifest that did not run, because its chapter did not build or it was missing, counts as failed.
The chapters graded (and their order) are the declared ones (chapters.py); the manifest gives their tests.
It prints a table per chapter and writes JSON with --json. Exit status 0 when every graded test passed.
Standard library only.
"""
import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import chapters

ROOT = pathlib.Path(__file__).resolve().parents[2]  # tools/course/grade.py -> the repository root
MANIFEST = ROOT / "tests" / "manifest.json"


def sh(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def tests_by_chapter(build_dir: pathlib.Path) -> dict:
    """Chapter id -> sorted test names, from a build's ctest registry (labels chX.Y)."""
    out = sh(["ctest", "--test-dir", str(build_dir), "--show-only=json-v1"])
    if out.returncode != 0:
        raise SystemExit(f"grade: ctest --show-only failed in {build_dir}:\n{out.stdout[-2000:]}")
    # ctest may print discovery messages before the JSON.
    listing = json.loads(out.stdout[out.stdout.index("{"):])
    by_chapter: dict = {}
    for test in listing["tests"]:
        labels = [p["value"] for p in test.get("properties", []) if p["name"] == "LABELS"]
        for label in (labels[0] if labels else []):
            if re.fullmatch(r"ch\d+\.\d+", label):
                by_chapter.setdefault(label, []).append(test["name"])
    return {cid: sorted(names) for cid, names in by_chapter.items()}


def manifest_from_build(build_dir: pathlib.Path) -> dict:
    built = chapters.from_build(build_dir)
    if any(c["tree"] != "reference" for c in built):
        raise SystemExit("grade: the manifest must come from a build where every chapter is on the reference")
    tests = tests_by_chapter(build_dir)
    return {"chapters": [dict(c, tests=tests.get(c["id"], [])) for c in built]}


def pristine_tree(work_dir: pathlib.Path, into: pathlib.Path) -> list:
    """Exports the committed course into `into`, overlays the learner files of work_dir; returns those taken."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "--", ".", ":(exclude)data"],
                             stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "data").symlink_to(ROOT / "data")
    taken = []
    for chapter in chapters.declared(into):
        learner_dir = into / chapter.learner_dir
        for pristine in sorted(learner_dir.rglob("*")) if learner_dir.exists() else []:
            if not pristine.is_file():
                continue
            relative = pristine.relative_to(into)
            theirs = work_dir / relative
            if theirs.is_file():
                shutil.copyfile(theirs, pristine)
                taken.append(str(relative))
    return taken


def junit_results(build_dir: pathlib.Path, cid: str) -> dict:
    """Test name -> (passed, first lines of the failure)."""
    junit = build_dir / f"grade-{cid}.xml"
    sh(["ctest", "--test-dir", str(build_dir), "-L", "^" + re.escape(cid) + "$", "-j2", "--timeout", "300",
        "--output-junit", str(junit)])
    if not junit.exists():
        return {}
    results = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.get("status") in ("fail", "notrun")
        output = "".join(node.text or "" for node in case.iter() if node.tag in ("system-out", "failure"))
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        reason = next((line for marker in ("TODO(", "Expected", "Value of", "error", "Failure")
                       for line in lines if marker in line), "")
        results[case.get("name")] = (not failed, reason[:160])
    return results


def grade(args) -> int:
    manifest = {c["id"]: c for c in json.loads(MANIFEST.read_text())["chapters"]}
    try:
        graded = chapters.select(chapters.declared(), chapters.split_list(args.chapters),
                                 chapters.split_list(args.week))
    except ValueError as error:
        raise SystemExit(f"grade: {error}")
    missing = [c.id for c in graded if c.id not in manifest]
    if missing:
        raise SystemExit(f"grade: {MANIFEST.relative_to(ROOT)} has no tests for {', '.join(missing)}; refresh it with "
                         "python3 tools/course/grade.py --write-manifest --build-dir build/reference")
    work_dir = pathlib.Path(args.work).resolve()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="tinyllm-grade-"))
    tree, build_dir = scratch / "src", scratch / "build"
    tree.mkdir()
    taken = pristine_tree(work_dir, tree)
    print(f"grade: {len(taken)} learner files from {work_dir}, pristine course from {ROOT} (HEAD)")
    configure = ["cmake", "-S", str(tree), "-B", str(build_dir), "-DTINYLLM_IMPL=learner", "-DTINYLLM_USE_REFERENCE=",
                 "-DCMAKE_BUILD_TYPE=Debug", "-DCMAKE_CXX_FLAGS_DEBUG=-g -O1", "-DTINYLLM_WERROR=OFF",
                 f"-DTINYLLM_SANITIZE={'OFF' if args.no_sanitize else 'ON'}"]
    out = sh(configure)
    if out.returncode != 0:
        raise SystemExit(f"grade: configuring the pristine tree failed:\n{out.stdout[-3000:]}")

    report, all_passed = [], True
    for chapter in graded:
        cid, expected = chapter.id, manifest[chapter.id]["tests"]
        built = sh(["cmake", "--build", str(build_dir), "--target", chapter.test_target, "-j", str(args.jobs)])
        results = junit_results(build_dir, cid) if built.returncode == 0 else {}
        tests = []
        for name in expected:
            passed, reason = results.get(name, (False, "did not run" if built.returncode == 0 else "did not build"))
            tests.append({"name": name, "passed": passed, "reason": "" if passed else reason})
        unexpected = sorted(set(results) - set(expected))
        n_passed = sum(t["passed"] for t in tests)
        status = ("build failed" if built.returncode != 0 else
                  "PASS" if n_passed == len(tests) else "not yet" if n_passed == 0 else "partial")
        all_passed &= status == "PASS"
        entry = {"id": cid, "title": chapter.title, "status": status, "passed": n_passed,
                 "expected": len(tests), "tests": tests, "unexpected_tests": unexpected}
        if built.returncode != 0:
            errors = [line for line in built.stdout.splitlines() if "error" in line]
            entry["build_errors"] = errors[:10]
        report.append(entry)
        print(f"  {cid:6} {chapter.title[:34]:34} {n_passed:3}/{len(tests):<3} {status}", flush=True)
        for line in entry.get("build_errors", [])[:3]:
            print(f"         {line[:150]}")
    total = sum(e["passed"] for e in report), sum(e["expected"] for e in report)
    print(f"grade: {total[0]}/{total[1]} tests passed in {len(report)} chapters")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"work": str(work_dir), "chapters": report,
                                                       "passed": total[0], "expected": total[1]}, indent=1))
    if args.keep:
        print(f"grade: kept {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if all_passed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT), help="the learner's checkout (default: this one)")
    parser.add_argument("--chapters", help="comma-separated chapter ids, e.g. ch1.1,ch1.2")
    parser.add_argument("--week", help="comma-separated weeks, e.g. week1")
    parser.add_argument("--json", help="write the report as JSON here")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-sanitize", action="store_true", help="build without ASan/UBSan (faster)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch tree and build")
    parser.add_argument("--write-manifest", action="store_true")
    parser.add_argument("--check-manifest", action="store_true")
    parser.add_argument("--build-dir", default=str(ROOT / "build" / "reference"))
    args = parser.parse_args()
    if args.write_manifest or args.check_manifest:
        fresh = manifest_from_build(pathlib.Path(args.build_dir).resolve())
        if args.write_manifest:
            MANIFEST.write_text(json.dumps(fresh, indent=1) + "\n")
            print(f"grade: wrote {MANIFEST} ({sum(len(c['tests']) for c in fresh['chapters'])} chapter tests)")
            return 0
        if json.loads(MANIFEST.read_text()) != fresh:
            print("grade: tests/manifest.json is out of date; run python3 tools/course/grade.py --write-manifest "
                  "--build-dir build/reference and commit it")
            return 1
        print("grade: tests/manifest.json matches the reference build")
        return 0
    return grade(args)


if __name__ == "__main__":
    sys.exit(main())
