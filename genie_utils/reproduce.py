"""Run the numbered notebooks headless with papermill: `python -m genie_utils.reproduce --profile embedded`.

Executed copies go to `results/<profile>/notebooks/`; the notebooks in `notebooks/` stay clean.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .profiles import available_profiles, load_profile, project_root, resolve


def notebooks(folder: Path, only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (`NN_name.ipynb`) in order, optionally those whose names start with `only`."""
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(prefix) for prefix in only)]
    return found


def run(profile_name: str, only: list[str] | None = None) -> list[tuple[str, float]]:
    import papermill

    profile = load_profile(profile_name)
    folder = project_root() / "notebooks"
    output = resolve(profile, profile["paths"]["results"]) / "notebooks"
    output.mkdir(parents=True, exist_ok=True)
    timings = []
    for notebook in notebooks(folder, only):
        began = time.perf_counter()
        print(f"[{profile_name}] {notebook.name}", flush=True)
        papermill.execute_notebook(str(notebook), str(output / notebook.name), parameters={"profile": profile_name},
                                   cwd=str(folder), kernel_name="python3", progress_bar=False)
        timings.append((notebook.name, time.perf_counter() - began))
        print(f"[{profile_name}] {notebook.name} done in {timings[-1][1]:.0f} s", flush=True)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="embedded", choices=available_profiles())
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 00 01")
    args = parser.parse_args(argv)
    timings = run(args.profile, args.only)
    if not timings:
        print("no notebooks matched", file=sys.stderr)
        return 1
    print(f"ran {len(timings)} notebooks in {sum(t for _, t in timings):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
