"""``python -m bench [--quick] [--only NAME] [--arg NAME.PARAM=VALUE] [--sizes NAME.PARAM=V1,V2]``: run the benchmarks,
write the results.

Each benchmark runs in a process of its own (a crash or a hang in one leaves the others' numbers intact, and
none inherits another's threads or imported TensorFlow). A benchmark module that is missing or does not import is
reported as "not available" with the reason; one that raises as "failed" with the error.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import BENCHMARKS
from bench.report import README, REPO_ROOT, RESULTS_DIR, build_report, git_revision, update_readme, write_results

# --quick: smaller sizes. A run() that takes `quick` gets quick=True; one that takes a size `n` gets this n.
QUICK_N = 300
EXIT_FAILED, EXIT_UNAVAILABLE = 1, 3


def quick_arguments(run) -> dict[str, Any]:
    parameters = inspect.signature(run).parameters
    if "quick" in parameters:
        return {"quick": True}
    if "n" in parameters:
        return {"n": QUICK_N}
    return {}


def child(module_name: str, arguments: dict[str, Any], quick: bool, output: Path) -> int:
    """In the benchmark's own process: import, run, write ``{"status", "result" | "reason", "arguments"}``."""

    def finish(outcome: dict[str, Any], code: int) -> int:
        output.write_text(json.dumps(outcome, default=str))
        return code

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name == module_name
        reason = f"not written yet ({module_name.replace('.', '/')}.py missing)" if missing else f"import failed: {exc}"
        return finish({"status": "not available", "reason": reason}, EXIT_UNAVAILABLE)
    except Exception as exc:
        return finish(
            {"status": "not available", "reason": f"import failed: {type(exc).__name__}: {exc}"}, EXIT_UNAVAILABLE
        )
    run = getattr(module, "run", None)
    if not callable(run):
        return finish({"status": "not available", "reason": f"{module_name} has no run() function"}, EXIT_UNAVAILABLE)
    arguments = {**(quick_arguments(run) if quick else {}), **arguments}
    try:
        result = run(**arguments)
    except Exception as exc:
        traceback.print_exc()
        return finish(
            {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "arguments": arguments}, EXIT_FAILED
        )
    if not isinstance(result, dict):
        return finish(
            {
                "status": "failed",
                "reason": f"run() returned {type(result).__name__}, not a dict",
                "arguments": arguments,
            },
            EXIT_FAILED,
        )
    return finish({"status": "ok", "result": result, "arguments": arguments}, 0)


def run_benchmark(module_name: str, arguments: dict[str, Any], quick: bool, timeout: float) -> dict[str, Any]:
    """Run one benchmark in a child process; its output streams to this terminal."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        output = Path(folder) / "outcome.json"
        command = [
            sys.executable,
            "-m",
            "bench",
            "--child",
            module_name,
            "--child-output",
            str(output),
            "--child-arguments",
            json.dumps(arguments),
        ] + (["--quick"] if quick else [])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        started = time.monotonic()
        try:
            process = subprocess.run(command, cwd=REPO_ROOT, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {
                "status": "failed",
                "reason": f"did not finish within {timeout:.0f} s",
                "seconds": round(time.monotonic() - started, 1),
            }
        seconds = round(time.monotonic() - started, 1)
        if not output.exists():
            return {
                "status": "failed",
                "reason": f"the benchmark process died (exit status {process.returncode})",
                "seconds": seconds,
            }
        return {**json.loads(output.read_text()), "seconds": seconds}


def kept_outcomes(previous: Path, running: set[str]) -> dict[str, dict[str, Any]]:
    """The previous results of the benchmarks not in ``running`` (keys are ``NAME`` or ``NAME (PARAM=VALUE)``)."""
    if not previous.is_file():
        return {}
    benchmarks = json.loads(previous.read_text()).get("benchmarks", {})
    return {key: outcome for key, outcome in benchmarks.items() if key.split(" ", 1)[0] not in running}


def parse_arguments(values: list[str]) -> dict[str, dict[str, Any]]:
    """``["ingestion.n=10000"]`` -> ``{"ingestion": {"n": 10000}}`` (values parsed as JSON when they are JSON)."""
    parsed: dict[str, dict[str, Any]] = {}
    for item in values:
        target, sep, raw = item.partition("=")
        name, dot, parameter = target.partition(".")
        if not sep or not dot or not name or not parameter:
            raise SystemExit(f"--arg expects NAME.PARAM=VALUE, got {item!r}")
        parsed.setdefault(name, {})[parameter] = _json_or_text(raw)
    return parsed


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_sizes(values: list[str]) -> dict[str, tuple[str, list[Any]]]:
    """``["ingestion.n=1000,6000"]`` -> ``{"ingestion": ("n", [1000, 6000])}``: run that benchmark once per value."""
    parsed: dict[str, tuple[str, list[Any]]] = {}
    for item in values:
        single = parse_arguments([item])
        ((name, arguments),) = single.items()
        ((parameter, raw),) = arguments.items()
        sizes = [_json_or_text(v.strip()) for v in str(raw).split(",") if v.strip()]
        if not sizes:
            raise SystemExit(f"--sizes expects NAME.PARAM=V1,V2,..., got {item!r}")
        parsed[name] = (parameter, sizes)
    return parsed


def planned_runs(
    modules: dict[str, str], extra: dict[str, dict[str, Any]], sizes: dict[str, tuple[str, list[Any]]]
) -> list[tuple[str, str, dict[str, Any], dict | None]]:
    """``(key, module, arguments, scale)`` per run: one per benchmark, or one per size of a --sizes benchmark."""
    runs = []
    for name, module in modules.items():
        if name not in sizes:
            runs.append((name, module, extra.get(name, {}), None))
            continue
        parameter, values = sizes[name]
        for value in values:
            scale = {"benchmark": name, "parameter": parameter, "value": value}
            runs.append((f"{name} ({parameter}={value})", module, {**extra.get(name, {}), parameter: value}, scale))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (minutes, not tens of minutes)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable; default: {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--module",
        action="append",
        metavar="DOTTED.NAME",
        help="run this benchmark module instead (its last name part names it)",
    )
    parser.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME.PARAM=VALUE",
        help="pass an argument to a benchmark's run(), e.g. ingestion.n=10000",
    )
    parser.add_argument(
        "--sizes",
        action="append",
        default=[],
        metavar="NAME.PARAM=V1,V2",
        help="run a benchmark once per size to see how it grows, e.g. ingestion.n=1000,6000",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark (default 3600)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--keep-others",
        action="store_true",
        help="keep the results of the benchmarks not run now from the previous latest.json (each says when and at "
        "which revision it was measured)",
    )
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-arguments", default="{}", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    if options.child:
        return child(options.child, json.loads(options.child_arguments), options.quick, options.child_output)

    if options.module:
        modules = {module.rsplit(".", 1)[-1]: module for module in options.module}
    else:
        unknown = set(options.only or []) - set(BENCHMARKS)
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(BENCHMARKS)}")
        modules = {name: f"bench.{name}" for name in BENCHMARKS if not options.only or name in options.only}
    extra = parse_arguments(options.arg)
    sizes = parse_sizes(options.sizes)
    unknown = set(sizes) - set(modules)
    if unknown:
        parser.error(f"--sizes names benchmark(s) not being run: {', '.join(sorted(unknown))}")

    outcomes: dict[str, dict[str, Any]] = {}
    for key, module, arguments, scale in planned_runs(modules, extra, sizes):
        print(f"=== benchmark {key} ({module}){' --quick' if options.quick else ''}", flush=True)
        outcome = run_benchmark(module, arguments, options.quick, options.timeout)
        if scale:
            outcome["scale"] = scale
        outcome["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        outcome["git_revision"] = git_revision()
        outcomes[key] = outcome
        detail = f": {outcome['reason']}" if outcome["status"] != "ok" else ""
        print(f"=== {key}: {outcome['status']}{detail} ({outcome['seconds']} s)", flush=True)

    failed = any(o["status"] == "failed" for o in outcomes.values())  # of the benchmarks run now
    if options.keep_others:
        outcomes = {**kept_outcomes(options.results_dir / "latest.json", set(modules)), **outcomes}
    report = build_report(outcomes, quick=options.quick)
    json_path, md_path = write_results(report, options.results_dir)
    print(f"wrote {json_path} and {md_path}")
    if not options.no_readme:
        if options.readme.is_file():
            update_readme(report, options.readme)
            print(f"updated the Benchmarks section of {options.readme}")
        else:
            print(f"warning: {options.readme} does not exist; README not updated", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
