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
    body = tables.fewshot_accuracy(tmp_path / "docs" / "results" / "embedded" / "fewshot" / "results.csv")
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
    body = tables.fewshot_accuracy(project_root() / "docs" / "results" / "embedded" / "fewshot" / "results.csv",
                                   ["weak"])
    # weak, 1-shot: the 12 committed episodes' mean and t(11) half-width, computed here from the file
    import pandas as pd
    from scipy import stats
    rows = pd.read_csv(project_root() / "docs/results/embedded/fewshot/results.csv")
    weak = rows[(rows.method == "weak") & (rows.shots == 1)].accuracy * 100
    half = stats.t.ppf(0.975, 11) * weak.std(ddof=1) / len(weak) ** 0.5
    assert f"{weak.mean():.1f} ± {half:.1f}" in body


@pytest.mark.parametrize("text, message", [
    ("<!-- table: no/such/table -->\nx\n<!-- /table -->\n", "unknown table or value 'no/such/table'"),
    ("<!-- table: embedded/fewshot/accuracy -->\nx\n", "left open"),
])
def test_unknown_or_open_markers_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        tables.rewrite(text, tables.renderers(project_root()), "page.md")


def test_a_value_in_a_sentence_is_written_from_its_file_and_a_hand_edit_is_caught(tmp_path):
    folder = tmp_path / "docs" / "results" / "embedded" / "ada"
    folder.mkdir(parents=True)
    (folder / "choices.csv").write_text("noise_ratio,episode\n0.7,0\n0.6,0\n0.7,1\n0.9,1\n")
    text = "Chosen: <!-- value: embedded/ada/choices -->r* = 0.6: 9 pairs<!-- /value -->, of four.\n"
    new, changed = tables.rewrite(text, tables.renderers(tmp_path), "page.md")
    assert changed == ["embedded/ada/choices"]
    assert new == "Chosen: <!-- value: embedded/ada/choices -->r* = 0.6: 1, 0.7: 2, 0.9: 1 pairs<!-- /value -->, of four.\n"
    assert tables.rewrite(new, tables.renderers(tmp_path), "page.md") == (new, [])


@pytest.mark.parametrize("text, message", [
    ("a <!-- value: embedded/ada/choices -->x\n", "value marker is left open"),
    ("a <!-- value: no/such/value -->x<!-- /value -->\n", "unknown table or value 'no/such/value'"),
    ("a <!-- value: embedded/ada/cost -->x<!-- /value -->\n", "is a table"),
])
def test_value_markers_that_are_open_unknown_or_tables_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        tables.rewrite(text, tables.renderers(project_root()), "page.md")


def test_class_probabilities_name_the_ends_and_the_closest_ratio(tmp_path):
    (tmp_path / "fewshot").mkdir()
    rows = [(5, r, s, "p_source") for r, s in ((0.5, 0.40), (0.7, 0.30), (0.9, 0.10))]
    rows += [(5, r, t, "p_target") for r, t in ((0.5, 0.10), (0.7, 0.28), (0.9, 0.50))]
    rows += [(1, 0.5, 0.99, "p_source"), (1, 0.5, 0.01, "p_target")]  # another shot count: left out
    import pandas as pd
    pd.DataFrame(rows, columns=["shots", "noise_ratio", "mean", "value"]).to_csv(
        tmp_path / "fewshot" / "class_probability_summary.csv", index=False)
    assert tables.class_probabilities(tmp_path / "fewshot" / "class_probability_summary.csv") == (
        "P(source) falls from 0.40 to 0.10 and P(target) rises from 0.10 to 0.50 between r = 0.5 and 0.9; they are "
        "closest at r = 0.7 (0.30 and 0.28)")


def test_the_oracle_agreement_of_genie_is_read_per_ratio_in_order(tmp_path):
    import pandas as pd
    (tmp_path / "fewshot").mkdir()
    pd.DataFrame({"method": ["genie", "weak", "genie", "genie"], "noise_ratio": [0.8, None, 0.5, 0.6],
                  "oracle_agrees": [0.624, 0.5, 0.06, 0.0934]}).to_csv(
        tmp_path / "fewshot" / "label_consistency.csv", index=False)
    assert tables.genie_oracle_agreement(tmp_path / "fewshot" / "label_consistency.csv") == (
        "the oracle names the target class for 6%, 9%, 62% of GeNIe's few-shot images at r = 0.5, 0.6, 0.8")


def test_the_budget_table_shows_few_and_overall_per_seed_budget_and_row(tmp_path):
    import pandas as pd
    rows = [{"generation_seed": 0, "budget": 4, "method": "genie", "group": g, "mean": m, "low": m - 1, "high": m + 1,
             "seconds": 30.0} for g, m in (("few", 1.94), ("overall", 0.5), ("many", 9.0))]
    pd.DataFrame(rows).to_csv(tmp_path / "budget.csv", index=False)
    assert tables.budget_curve(tmp_path / "budget.csv").splitlines()[2] == (
        "| 0 | 4 | GeNIe (r = 0.8) | +1.9 [+0.9, +2.9] | +0.5 [-0.5, +1.5] | 0.5 |")
    assert tables.budget_gain(tmp_path / "budget.csv", "genie", 4, group="overall") == "+0.5 [-0.5, +1.5]"
    with pytest.raises(ValueError, match="0 rows of 'genie' at budget 8"):
        tables.budget_gain(tmp_path / "budget.csv", "genie", 8)


def test_readme_quotes_the_shipped_models_editing_benchmark_from_its_file():
    import pandas as pd
    text = (project_root() / "README.md").read_text()
    assert "<!-- table: companion/targets -->" in text
    rows = pd.read_csv(project_root() / "models/genie-companion/editing.csv")
    rows = rows[(rows.group == "all classes") & (rows.setting == rows.setting.iloc[-1])]
    assert f"<!-- value: companion/crossover -->{rows.crossover.iloc[0]:.2f}<!-- /value -->" in text
