"""Run the numbered notebooks headless with papermill: `python -m genie_utils.reproduce --profile embedded`.

Executed copies go to `results/<profile>/notebooks/`; the notebooks in `notebooks/` stay clean. A notebook
whose inputs did not change since its last successful run is skipped: its key hashes the notebook's cells (their
sources, not their outputs), the library's source, the profile (as loaded, `extends` resolved), the shipped
models' files and the keys of the notebooks before it (a later notebook reads what an earlier one wrote).
`--force` runs everything again.

A profile with a `[settle]` table (the settle run, `embedded-settle`) runs no notebooks: it runs every slice of
`genie_utils.settle` again, into its committed folder, and writes the verdicts.

`--augmentations` makes the generated images only (notebook 02's few-shot augmentations, 06's long-tail ones),
into the profile's store, spread over the processes that `accelerate launch` or `torchrun` started (one per GPU;
nodes that share the results folder); a plain run of the notebooks afterwards finds every image in the store.

`--record-checks` runs the smoke profile and stores, in `notebooks/`, the outputs of the cells marked
`# NBVAL_CHECK_OUTPUT`: the values `make test` (pytest --nbval-lax) compares a fresh run with.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import papermill

from . import data, fewshot, generate, longtail, preflight, settle, splits
from .jobs import process_state
from .profiles import load_profile, profile_argument, project_root
from .run_files import RunFiles
from .store import Store
from .validation import run_command


def notebooks(folder: Path, only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (`NN_name.ipynb`) in order, optionally those whose names start with `only`."""
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(prefix) for prefix in only)]
    return found


def profile_notebooks(profile: dict, folder: Path, only: list[str] | None = None) -> list[Path]:
    """The notebooks a profile runs (`[notebooks] run`: name prefixes; default every one), those of them that `only`
    names; a ValueError when `only` names a notebook outside the profile's list."""
    own = notebooks(folder, profile.get("notebooks", {}).get("run"))
    if only:
        outside = [p.name for p in notebooks(folder, only) if p not in own]
        if outside:
            raise ValueError(f"profile {profile['name']!r} does not run {', '.join(outside)}: its notebooks are "
                             f"{', '.join(p.name for p in own)} ([notebooks] run)")
        return [p for p in own if p in notebooks(folder, only)]
    return own


def _digest(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def input_digest(profile: dict) -> str:
    """What every notebook depends on besides itself: the library's source, the profile, the models."""
    library = Path(__file__).parent
    sources = [p for p in library.rglob("*") if p.is_file() and p.suffix in {".py", ".toml", ".csv", ".json"}]
    models = [p for p in (project_root() / "models").rglob("*") if p.is_file() and p.suffix != ".png"]
    settings = {k: v for k, v in profile.items() if k not in ("root", "file")}
    return hashlib.sha256(f"{_digest(sources)}|{_digest(models)}|{json.dumps(settings, sort_keys=True)}".encode()).hexdigest()


def cells_digest(notebook: Path) -> str:
    """A notebook's cells (type and source) without outputs: recording checked outputs changes no key."""
    cells = [(c["cell_type"], "".join(c["source"])) for c in json.loads(notebook.read_text())["cells"]]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def stage_keys(profile: dict, folder: Path) -> dict[str, str]:
    """Each notebook's key, chained: a change to a notebook reruns it and every notebook after it."""
    keys, previous = {}, input_digest(profile)
    for notebook in notebooks(folder):
        previous = hashlib.sha256(f"{previous}|{cells_digest(notebook)}".encode()).hexdigest()
        keys[notebook.name] = previous
    return keys


def run(profile_name: str, only: list[str] | None = None, force: bool = False) -> list[tuple[str, float]]:
    """Execute the profile's notebooks (those named by `only`), skipping those whose key is unchanged."""
    profile = load_profile(profile_name)
    folder = project_root() / "notebooks"
    output = RunFiles.of(profile).notebooks
    output.mkdir(parents=True, exist_ok=True)
    keys = stage_keys(profile, folder)
    timings = []
    for notebook in profile_notebooks(profile, folder, only):
        stamp = output / f"{notebook.stem}.key"
        if not force and stamp.is_file() and stamp.read_text().strip() == keys[notebook.name] \
                and (output / notebook.name).is_file():
            print(f"[{profile['name']}] {notebook.name}: inputs unchanged, skipped (--force runs it)", flush=True)
            continue
        began = time.perf_counter()
        print(f"[{profile['name']}] {notebook.name}", flush=True)
        stamp.unlink(missing_ok=True)  # a failed or interrupted run leaves no key: it reruns next time
        papermill.execute_notebook(str(notebook), str(output / notebook.name), parameters={"profile": profile_name},
                                   cwd=str(folder), kernel_name="python3", progress_bar=False)
        stamp.write_text(keys[notebook.name] + "\n")
        timings.append((notebook.name, time.perf_counter() - began))
        print(f"[{profile['name']}] {notebook.name} done in {timings[-1][1]:.0f} s", flush=True)
    return timings


GENERATING = ("02", "06")  # the notebooks that generate augmentations: the few-shot episodes', the long tail's


def spread_augmentations(profile_name: str, progress: bool = True) -> int:
    """The images of the profile's generating notebooks (02: `fewshot.generate_share`, 06: `longtail.generate_share`),
    this process's share of them: under `accelerate launch` or `torchrun` the jobs whose keys fall in its shard,
    alone all of them. Process 0 runs those notebooks' preflight first, and no process generates when an item is
    not ready. Returns the exit status."""
    from accelerate.utils import broadcast_object_list  # as process_state: only under a launcher

    profile = load_profile(profile_name)
    generating = [p.name[:2] for p in profile_notebooks(profile, project_root() / "notebooks") if p.name[:2] in GENERATING]
    state = process_state()
    index, count = (state.process_index, state.num_processes) if state else (0, 1)
    device = state.device if state else None
    ready = [False]
    if index == 0:
        items = preflight.preflight(profile, generating, device)
        print(preflight.table(profile["name"], items), flush=True)
        ready = [all(item.ok for item in items)]
    if state:
        broadcast_object_list(ready)
    if not ready[0]:
        return 1
    dataset = data.load_dataset(profile, progress=False)
    tables, names = splits.load_splits(profile, dataset), data.class_display_names(dataset)
    store = Store(RunFiles.of(profile).store)
    generator = generate.GenieGenerator.from_profile(profile, device)
    shard, progress = (index, count), progress and index == 0
    for notebook in generating:
        if notebook == "02":  # the episodes are drawn alike in every process
            held = fewshot.generate_share(generator, fewshot.draw_episodes(profile, dataset, tables), store, names,
                                          shard, progress)
        else:
            train, _, classes = longtail.load_split(profile, dataset, tables)
            held = longtail.generate_share(profile, generator, train, classes, store, names, shard, progress)
        print(f"[{profile['name']}] notebook {notebook}'s images: {held} in {store.root} (process {index} of {count})",
              flush=True)
    if state:
        state.wait_for_everyone()
    return 0


CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"


def is_checked(cell: dict) -> bool:
    lines = "".join(cell["source"]).splitlines()
    return cell["cell_type"] == "code" and any(line.strip() == CHECK_MARKER for line in lines)


def record_checks(executed: Path, notebook: Path) -> int:
    """Copy the outputs of `executed`'s checked cells into `notebook`'s cells of the same id; returns how many.
    Other cells keep no outputs, so the notebooks in `notebooks/` stay small and readable."""
    ran = {c.get("id"): c for c in json.loads(executed.read_text())["cells"]}
    document = json.loads(notebook.read_text())
    recorded = 0
    for cell in document["cells"]:
        if is_checked(cell):
            if cell.get("id") not in ran:
                raise KeyError(f"{notebook.name}: checked cell {cell.get('id')} is missing from {executed}; rerun it")
            cell["outputs"] = ran[cell["id"]]["outputs"]
            cell["execution_count"] = ran[cell["id"]]["execution_count"]  # nbval ignores unrun cells' outputs
            recorded += 1
    notebook.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", type=profile_argument,
                        help="a profile name (genie_utils/profiles) or .toml file")
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="notebook name prefixes, e.g. 00 01 (without --only: every notebook)")
    parser.add_argument("--force", action="store_true", help="run every notebook, even those whose inputs are unchanged")
    parser.add_argument("--check", action="store_true",
                        help="the preflight only: check what the run needs, generate nothing (exit 1 if not ready)")
    parser.add_argument("--augmentations", action="store_true",
                        help="the generated images only (notebooks 02 and 06), into the store, shared among the "
                             "processes of accelerate launch or torchrun (several GPUs or nodes); then run without it")
    parser.add_argument("--record-checks", action="store_true",
                        help="with --profile smoke (what make test runs): after running, store the outputs of the "
                             "`# NBVAL_CHECK_OUTPUT` cells in notebooks/")
    args = parser.parse_args(argv)
    folder = project_root() / "notebooks"
    if args.only and not notebooks(folder, args.only):  # usage errors: exit status 2, as argparse's own
        parser.error(f"--only {' '.join(args.only)}: no notebook's name starts so; give prefixes of "
                     f"{', '.join(p.name for p in notebooks(folder))}")
    if args.record_checks and args.profile != "smoke":
        parser.error("--record-checks stores what make test compares, i.e. the smoke profile's outputs: "
                     "add --profile smoke")
    if args.augmentations:
        if args.only or args.check or args.record_checks or args.force:
            parser.error("--augmentations makes the generated images and nothing else: give it without --only, "
                         "--check, --force and --record-checks")
        if not any(p.name[:2] in GENERATING for p in profile_notebooks(load_profile(args.profile), folder)):
            parser.error(f"--augmentations makes the images of notebooks {' and '.join(GENERATING)}, and profile "
                         f"{args.profile!r} runs neither ([notebooks] run)")
        return spread_augmentations(args.profile)
    if "settle" in load_profile(args.profile):  # the settle run: slices, not notebooks
        return settle.main(["--profile", args.profile, "--all"])
    profile = load_profile(args.profile)
    try:
        chosen = profile_notebooks(profile, folder, args.only)
    except ValueError as error:
        parser.error(str(error))
    items = preflight.preflight(profile, [p.name[:2] for p in chosen])
    print(preflight.table(profile["name"], items), flush=True)
    if args.check or not all(item.ok for item in items):
        return 0 if all(item.ok for item in items) else 1
    timings = run(args.profile, args.only, args.force)
    print(f"ran {len(timings)} notebooks in {sum(t for _, t in timings):.0f} s")
    if args.record_checks:
        executed = RunFiles.of(load_profile(args.profile)).notebooks
        for notebook in notebooks(project_root() / "notebooks", args.only):
            print(f"{notebook.name}: {record_checks(executed / notebook.name, notebook)} checked cells recorded")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "reproduce"))
