"""The companion as a static site that opens offline: README, docs/, the model cards and the executed notebooks.

`make site` (or `python -m genie_utils.site --profile embedded`) stages, under `results/<profile>/site-source/`, the
files the site shows in the places the repository has them, except that `notebooks/` holds the copies `make
reproduce` executed (`results/<profile>/notebooks/`), so README's links to the notebooks open them with their
outputs. Sphinx with myst-nb (`docs/site/conf.py`) then builds `results/<profile>/site/` without running anything,
and `check_offline` refuses a page that loads anything from outside the site or links to a page that is not there;
where Debian's `chromium` is installed (or with `--browser`), `check_in_browser` opens every page in headless
Chromium. Open `results/<profile>/site/README.html`.

`--publish` (`make publish`) writes the executed notebooks, made portable (`portable`: paths relative to the
project, no run timings), into `docs/notebooks/`, so that a reader on a code host sees every output, and the result
files the paper's figures and tables are drawn from (`published_results`) into `docs/results/<profile>/`; commit
them. The site shows the same portable copies, and README's paper map links each figure to both.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .profiles import load_profile, profile_argument, project_root
from .run_files import RunFiles

SHOWN = ("README.md", "docs/*.md", "docs/*.png", "docs/notebooks/*.ipynb", "docs/results/**/*.csv", "models/*/README.md", "models/*/*.png", "figures/**/*.png",
         "genie_utils/**/*.py", "genie_utils/**/*.toml", "benchmarks/*.py", "notebooks/*.cfg")


def stage(files: RunFiles, root: Path | None = None, notebooks: Path | None = None) -> Path:
    """Copy what the site shows into the run's `site-source/` (emptied first); the notebooks from `notebooks`
    (default: the run's executed copies). Returns the folder."""
    root = root or project_root()
    found = executed_notebooks(notebooks or files.notebooks)
    target = files.site_source
    shutil.rmtree(target, ignore_errors=True)
    for pattern in SHOWN:
        for path in root.glob(pattern):
            if path.is_file() and target.name not in path.parts:
                copy = target / path.relative_to(root)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
    (target / "notebooks").mkdir(parents=True, exist_ok=True)
    for notebook in found:
        write_notebook(portable(json.loads(notebook.read_text()), root), target / "notebooks" / notebook.name)
    return target


def executed_notebooks(folder: Path) -> list[Path]:
    """The numbered notebooks `make reproduce` executed into `folder`, or an error naming the fix."""
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb")) if folder.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no executed notebooks in {folder}: run `make reproduce` first (it executes "
                                "them there), or pass the folder of executed notebooks")
    return found


def relative_to_project(text: str, root: Path, escape=lambda path: path) -> str:
    """`text` with every mention of the project's folder `root` made relative to it (`escape`: how the text
    writes a path, e.g. inside JSON strings)."""
    for prefix in {str(root), str(Path(root).resolve())}:
        text = text.replace(escape(prefix + "/"), "").replace(escape(prefix), ".")
    return text


def published_results(files: RunFiles) -> list[Path]:
    """The result files README's paper map names and its tables are written from, in a run's `files` (or in its
    published copy: the same layout); the per-query and per-test-image outcomes, megabytes each, stay unpublished."""
    fewshot, longtail = files.fewshot, files.longtail
    return [files.ada.choices, files.ada.cost, fewshot.method_comparison, fewshot.embedding_view, fewshot.results,
            fewshot.summary, fewshot.differences, fewshot.class_probabilities, fewshot.class_probability_summary,
            fewshot.ada_choices, fewshot.label_consistency, fewshot.noise_sources, longtail.results,
            longtail.bin_accuracy, longtail.gain_by_class, longtail.differences, longtail.added_to_logit_adjustment,
            files.dataset.class_sizes]


# papermill's record of a run: where and when it ran, cell by cell; none of it is a result
RUN_METADATA = ("papermill", "execution")


def portable(notebook: dict, root: Path) -> dict:
    """An executed notebook as a reader elsewhere should see it: every mention of the project's folder `root` in
    outputs and metadata made relative to it, and papermill's paths and timings (`RUN_METADATA`) left out."""
    def strip(metadata: dict) -> dict:
        return {k: v for k, v in metadata.items() if k not in RUN_METADATA}

    notebook = {**notebook, "metadata": strip(notebook.get("metadata", {})),
                "cells": [{**cell, "metadata": strip(cell.get("metadata", {}))} for cell in notebook["cells"]]}
    return json.loads(relative_to_project(json.dumps(notebook), root, lambda path: json.dumps(path)[1:-1]))


def write_notebook(notebook: dict, path: Path) -> Path:
    """A notebook as JSON the way Jupyter writes it (indent 1, non-ASCII kept, final newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return path


def publish(profile: dict, root: Path | None = None, folder: Path | None = None) -> list[Path]:
    """The profile's executed notebooks, `portable`, into `folder`/notebooks/ (default `docs/notebooks/`), and its
    `published_results`, the project's folder cut from their paths, into `folder`/results/<profile>/ (default
    `docs/results/<profile>/`), for readers on a code host; an error naming what is missing before any is written."""
    root = root or project_root()
    files = RunFiles.of(profile)
    found = executed_notebooks(files.notebooks)
    missing = [str(path.relative_to(files.results)) for path in published_results(files) if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"result files missing under {files.results}: {', '.join(missing)}; run `make "
                                "reproduce` first")
    folder = Path(folder) if folder else root / "docs"
    written = [write_notebook(portable(json.loads(p.read_text()), root), folder / "notebooks" / p.name) for p in found]
    copies = RunFiles(folder / "results" / profile["name"])
    for source, target in zip(published_results(files), published_results(copies)):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(relative_to_project(source.read_text(), root))
        written.append(target)
    return written


def build(files: RunFiles, notebooks: Path | None = None, quiet: bool = True) -> Path:
    """Stage and build the site into the run's `site/` (`files.site`), then check it (`check_offline`). Returns the
    folder; a page that would need the network or a link that leads nowhere is a RuntimeError naming them."""
    from sphinx.cmd.build import build_main  # here: Sphinx is needed for the site only (extra `site`)

    source = stage(files, notebooks=notebooks)
    output = files.site
    shutil.rmtree(output, ignore_errors=True)
    # -E: every page read afresh; a saved environment would keep a page's links as resolved when its file had not
    # changed, though the pages it links to had (e.g. docs/notebooks/ published since the last build)
    arguments = ["-b", "html", "-E", "-W", "--keep-going", "-c", str(project_root() / "docs" / "site"),
                 "-d", str(files.site_doctrees),
                 str(source), str(output)] + (["-q"] if quiet else [])
    if build_main(arguments) != 0:  # -W: a warning, e.g. a link to a file the site lacks, fails the build
        raise RuntimeError(f"sphinx could not build the site from {source}: its messages above name the pages")
    problems = check_offline(output)
    if problems:
        raise RuntimeError(f"{len(problems)} problems in the site {output}:\n" + "\n".join(problems[:20]))
    return output


class _References(HTMLParser):
    """Every reference of a page: (tag, attribute, value), and whether the tag loads it with the page."""
    LOADED = {("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src"), ("video", "src"),
              ("audio", "src"), ("embed", "src"), ("object", "data")}

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str, str, bool]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in ("src", "href", "data"):
            value = attributes.get(name)
            if value is None:
                continue
            loaded = (tag, name) in self.LOADED or (tag == "link" and name == "href")
            self.found.append((tag, name, value, loaded))


def check_offline(site: Path) -> list[str]:
    """Problems of a built site, one line each: a page that loads a resource from outside the site (a CDN
    script, font or stylesheet), or a link or resource inside the site that does not exist."""
    site = Path(site)
    problems = []
    for page in sorted(site.rglob("*.html")):
        parser = _References()
        parser.feed(page.read_text(errors="replace"))
        for tag, name, value, loaded in parser.found:
            parts = urlsplit(value)
            if parts.scheme in ("mailto", "data", "javascript") or value.startswith("#"):
                continue
            if parts.scheme or parts.netloc:
                if loaded:
                    problems.append(f"{page.relative_to(site)}: <{tag} {name}={value!r}> loads from the network")
                continue
            path = unquote(parts.path)
            if not path:
                continue
            resolved = (page.parent / path).resolve()
            if not resolved.exists() or site.resolve() not in (resolved, *resolved.parents):
                problems.append(f"{page.relative_to(site)}: <{tag} {name}={value!r}> leads to nothing in the site")
    return problems


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def check_in_browser(site: Path, chromium: str | None = None) -> list[str]:
    """Open every page of a built site in headless Chromium (Debian's `chromium`, driven by Playwright): problems,
    one line each, for a request that leaves the site's folder and an image that does not render. None is a
    RuntimeError: without Chromium, install it (`apt-get install chromium`)."""
    from playwright.sync_api import sync_playwright  # here: the browser check is the site's only use of it

    chromium = chromium or shutil.which("chromium")
    if not chromium:
        raise RuntimeError("no chromium on PATH: install Debian's package (apt-get install chromium) to check the "
                           "site in a browser")
    site = Path(site).resolve()
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page()
            current = {"page": ""}

            def on_request(request):
                url = urlsplit(request.url)
                inside = url.scheme == "file" and site in Path(unquote(url.path)).resolve().parents
                if not inside and url.scheme not in ("data", "about", "blob"):
                    problems.append(f"{current['page']}: requests {request.url}")

            page.on("request", on_request)
            for html in sorted(site.rglob("*.html")):
                current["page"] = str(html.relative_to(site))
                page.goto(html.as_uri(), wait_until="load")
                broken = page.evaluate("Array.from(document.images)"
                                       ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
                problems += [f"{current['page']}: image {src} does not render" for src in broken]
        finally:
            browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", type=profile_argument,
                        help="a profile name (genie_utils/profiles) or .toml file")
    parser.add_argument("--publish", action="store_true",
                        help="write the executed notebooks, paths made relative, into docs/notebooks/ instead")
    parser.add_argument("--browser", action="store_true",
                        help="require the check in headless Chromium (Debian's chromium); without it, the check runs "
                             "only where chromium is installed")
    args = parser.parse_args(argv)
    if "settle" in load_profile(args.profile):
        print(f"{args.profile} is a settle run: it executes no notebooks, so it has no site; its rows and verdicts are "
              "committed in its [settle] folder and README's tables are written from them (make tables)")
        return 0
    if args.publish:
        try:
            written = publish(load_profile(args.profile))
        except FileNotFoundError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"{len(written)} executed notebooks and result files under {written[0].parent.parent}: commit them")
        return 0
    try:
        output = build(RunFiles.of(load_profile(args.profile)))
        browser = args.browser or shutil.which("chromium") is not None
        problems = check_in_browser(output) if browser else []
    except (FileNotFoundError, RuntimeError) as error:
        print(error, file=sys.stderr)
        return 1
    if problems:
        print(f"{len(problems)} problems in headless Chromium:\n" + "\n".join(problems[:20]), file=sys.stderr)
        return 1
    checked = "every page opened offline in headless Chromium" if browser else \
        "links and resources checked; no chromium here to open the pages"
    print(f"site: {output / 'README.html'} ({checked})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
