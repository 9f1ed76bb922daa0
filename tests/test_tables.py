"""The tables of README and docs are written from the committed result files: a page that differs fails."""
import shutil

import pytest

from genie_utils import tables
from genie_utils.profiles import project_root


def test_every_marked_table_in_readme_and_docs_equals_its_result_files():
    assert tables.write(check=True) == {}, "run `make tables`: a page's table differs from its result files"


def test_the_pages_name_the_tables_readers_come_for():
    text = (project_root() / "README.md").read_text()
    for name in ("embedded-settle/verdicts", "embedded-settle/record", "embedded/fewshot/accuracy-main"):
        assert f"<!-- table: {name} -->" in text


def test_a_number_changed_by_hand_is_caught_and_written_back(tmp_path):
    root = project_root()
    shutil.copytree(root / "docs" / "results" / "embedded", tmp_path / "docs" / "results" / "embedded")
    body = tables.fewshot_accuracy(tmp_path / "docs" / "results" / "embedded")
    page = tmp_path / "README.md"
    page.write_text(f"before\n<!-- table: embedded/fewshot/accuracy -->\n{body}<!-- /table -->\nafter\n")
    assert tables.write(tmp_path, check=True) == {}
    edited = body.replace(body.split("|")[8].strip(), "99.9 ± 0.1", 1)  # the first number cell
    assert edited != body
    page.write_text(f"before\n<!-- table: embedded/fewshot/accuracy -->\n{edited}<!-- /table -->\nafter\n")
    assert tables.write(tmp_path, check=True) == {"README.md": ["embedded/fewshot/accuracy"]}
    assert "99.9 ± 0.1" in page.read_text()  # check writes nothing
    tables.write(tmp_path)
    assert page.read_text() == f"before\n<!-- table: embedded/fewshot/accuracy -->\n{body}<!-- /table -->\nafter\n"


def test_the_few_shot_table_shows_student_t_intervals():
    body = tables.fewshot_accuracy(project_root() / "docs" / "results" / "embedded", ["weak"])
    # weak, 1-shot: the 12 committed episodes' mean and t(11) half-width, computed here from the file
    import pandas as pd
    from scipy import stats
    rows = pd.read_csv(project_root() / "docs/results/embedded/fewshot/results.csv")
    weak = rows[(rows.method == "weak") & (rows.shots == 1)].accuracy * 100
    half = stats.t.ppf(0.975, 11) * weak.std(ddof=1) / len(weak) ** 0.5
    assert f"{weak.mean():.1f} ± {half:.1f}" in body


@pytest.mark.parametrize("text, message", [
    ("<!-- table: no/such/table -->\nx\n<!-- /table -->\n", "unknown table 'no/such/table'"),
    ("<!-- table: embedded/fewshot/accuracy -->\nx\n", "left open"),
])
def test_unknown_or_open_markers_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        tables.rewrite(text, tables.renderers(project_root()), "page.md")
