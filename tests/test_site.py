"""The offline site: staging, the Sphinx build, and the check that no page needs the network or links to nothing."""
import shutil

import pytest

from genie_utils import profiles, site
from genie_utils.run_files import RunFiles


def page(folder, name, body):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><head></head><body>{body}</body></html>")
    return path


def test_the_offline_check_names_network_resources_and_dead_links(tmp_path):
    page(tmp_path, "docs/a.html", '<a href="../index.html#x">up</a><img src="../_images/f.png">'
                                  '<a href="https://example.org/paper">paper</a><a href="#here">here</a>')
    page(tmp_path, "index.html", '<link rel="stylesheet" href="_static/s.css"><a href="docs/a.html">a</a>')
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "f.png").write_bytes(b"png")
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "s.css").write_text("")
    assert site.check_offline(tmp_path) == []  # external <a> links are no request; inside links resolve
    page(tmp_path, "b.html", '<script src="https://cdn.example.org/require.js"></script>'
                             '<link href="//fonts.example.org/f.css" rel="stylesheet"><a href="docs/missing.html">x</a>'
                             '<img src="../outside.png">')
    problems = site.check_offline(tmp_path)
    assert len(problems) == 4 and all(p.startswith("b.html: ") for p in problems)
    assert sum("loads from the network" in p for p in problems) == 2
    assert sum("leads to nothing in the site" in p for p in problems) == 2


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    profile = profiles.load_profile("smoke")
    profile["paths"] = {**profile["paths"], "results": str(tmp_path_factory.mktemp("site") / "results")}
    with pytest.raises(FileNotFoundError, match="run `make reproduce` first"):
        site.build(RunFiles.of(profile))
    # the notebooks as committed stand in for executed ones: the site shows whatever outputs they hold
    return site.build(RunFiles.of(profile), notebooks=profiles.project_root() / "notebooks")


def test_the_site_builds_offline_from_executed_notebooks(built):
    output = built
    assert (output / "README.html").is_file() and (output / "docs" / "method.html").is_file()
    assert sorted(p.name for p in (output / "notebooks").glob("*.html")) == [
        p.with_suffix(".html").name for p in sorted((profiles.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    readme = (output / "README.html").read_text()
    assert 'href="notebooks/04_fewshot.html#the-few-shot-table"' in readme and 'href="docs/results.html' in readme
    assert 'id="the-few-shot-table"' in (output / "notebooks" / "04_fewshot.html").read_text()  # the link's cell
    assert site.check_offline(output) == []
    sidebar = (output / "docs" / "results.html").read_text()  # every page lists the others, checked by check_offline
    assert 'href="method.html"' in sidebar and 'href="../notebooks/05_fewshot_analysis.html"' in sidebar


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (make test installs it where it runs as root)")
def test_every_page_opens_offline_in_headless_chromium(built, tmp_path):
    assert site.check_in_browser(built) == []
    copy = shutil.copytree(built, tmp_path / "copy")  # and the check sees what it is for
    page = copy / "docs" / "method.html"
    page.write_text(page.read_text().replace("</head>", '<script src="https://cdn.example.org/x.js"></script></head>'))
    readme = copy / "README.html"
    readme.write_text(readme.read_text().replace("<body>", '<body><img src="_images/none.png">', 1))
    assert sorted(site.check_in_browser(copy)) == [
        f"README.html: image {(copy / '_images' / 'none.png').as_uri()} does not render",
        "docs/method.html: requests https://cdn.example.org/x.js"]


def test_published_notebooks_keep_their_outputs_without_the_machine_s_paths_or_run_timings(tmp_path):
    root = tmp_path / "project"
    notebook = {"nbformat": 4, "nbformat_minor": 5,
                "metadata": {"kernelspec": {"name": "python3"},
                             "papermill": {"input_path": f"{root}/notebooks/01.ipynb", "duration": 3.2}},
                "cells": [{"cell_type": "code", "execution_count": 1, "source": "plots.save(figure)",
                           "metadata": {"papermill": {"duration": 1.5}, "execution": {"iopub.status.idle": "t"},
                                        "tags": ["keep"]},
                           "outputs": [{"output_type": "execute_result", "execution_count": 1,
                                        "data": {"text/plain": f"PosixPath('{root}/figures/embedded/f.png')",
                                                 "text/html": f"<td>{root}/.cache/a.png</td>"}, "metadata": {}},
                                       {"output_type": "stream", "name": "stdout", "text": f"model {root}\n"}]}]}
    profile = profiles.load_profile("smoke")
    profile["paths"] = {**profile["paths"], "results": str(tmp_path / "results")}
    with pytest.raises(FileNotFoundError, match="run `make reproduce` first"):
        site.publish(profile, root, tmp_path / "published")
    site.write_notebook(notebook, tmp_path / "results" / "notebooks" / "01_walk.ipynb")
    with pytest.raises(FileNotFoundError, match="result files missing under .*ada/choices.csv"):
        site.publish(profile, root, tmp_path / "published")
    for path in site.published_results(RunFiles(tmp_path / "results")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"image_id,path\n1F600,{root}/.cache/openmoji/1F600.png\n")
    assert not (tmp_path / "published").exists()  # nothing written before every file was found
    written = site.publish(profile, root, tmp_path / "published")
    assert written[0] == tmp_path / "published" / "notebooks" / "01_walk.ipynb"
    assert written[1:] == site.published_results(RunFiles(tmp_path / "published" / "results" / "smoke"))
    assert written[1] == tmp_path / "published" / "results" / "smoke" / "ada" / "choices.csv"
    assert written[1].read_text() == "image_id,path\n1F600,.cache/openmoji/1F600.png\n"
    text = written[0].read_text()
    assert str(tmp_path) not in text and "duration" not in text and "iopub" not in text
    published = site.json.loads(text)
    cell = published["cells"][0]
    assert cell["metadata"] == {"tags": ["keep"]} and published["metadata"] == {"kernelspec": {"name": "python3"}}
    assert cell["outputs"][0]["data"] == {"text/plain": "PosixPath('figures/embedded/f.png')",
                                          "text/html": "<td>.cache/a.png</td>"}
    assert cell["outputs"][1]["text"] == "model .\n" and cell["source"] == "plots.save(figure)"
