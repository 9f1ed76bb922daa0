"""The offline site: staging, the Sphinx build, and the check that no page needs the network or links to nothing."""
import shutil

import pytest

from genie_utils import profiles, site


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
        site.build(profile)
    # the notebooks as committed stand in for executed ones: the site shows whatever outputs they hold
    return site.build(profile, notebooks=profiles.project_root() / "notebooks")


def test_the_site_builds_offline_from_executed_notebooks(built):
    output = built
    assert (output / "README.html").is_file() and (output / "docs" / "method.html").is_file()
    assert sorted(p.name for p in (output / "notebooks").glob("*.html")) == [
        p.with_suffix(".html").name for p in sorted((profiles.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    readme = (output / "README.html").read_text()
    assert 'href="notebooks/04_fewshot.html"' in readme and 'href="docs/results.html' in readme
    assert site.check_offline(output) == []


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
