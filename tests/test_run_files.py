"""Where a run's files land: every folder and named file of `RunFiles`, written out by hand, for a profile whose
results folder is relative to the project root and for one whose results folder is absolute."""
from operator import attrgetter
from pathlib import Path

import pytest

from genie_utils.run_files import RunFiles


def expected(results: Path) -> dict[str, Path]:
    """Every folder and file `RunFiles` names under a results folder (by attribute), as the run writes it."""
    return {
        "store": results / "store",
        "notebooks": results / "notebooks",
        "site": results / "site",
        "site_source": results / "site-source",
        "site_doctrees": results / "site-doctrees",
        "fewshot.folder": results / "fewshot",
        "fewshot.episodes": results / "fewshot" / "episodes.csv",
        "fewshot.augmentations": results / "fewshot" / "augmentations.csv",
        "fewshot.results": results / "fewshot" / "results.csv",
        "fewshot.class_probabilities": results / "fewshot" / "class_probabilities.csv",
        "fewshot.ada_choices": results / "fewshot" / "ada_choices.csv",
        "fewshot.query_outcomes": results / "fewshot" / "query_outcomes.csv",
        "fewshot.summary": results / "fewshot" / "summary.csv",
        "fewshot.differences": results / "fewshot" / "differences.csv",
        "fewshot.table": results / "fewshot" / "table",
        "fewshot.noise_sources": results / "fewshot" / "noise_sources.csv",
        "fewshot.precision": results / "fewshot" / "precision.csv",
        "fewshot.class_probability_summary": results / "fewshot" / "class_probability_summary.csv",
        "fewshot.label_consistency": results / "fewshot" / "label_consistency.csv",
        "fewshot.label_consistency_skipped": results / "fewshot" / "label_consistency.txt",
        "fewshot.embedding_view": results / "fewshot" / "embedding_view.csv",
        "fewshot.method_comparison": results / "fewshot" / "method_comparison.csv",
        "longtail.folder": results / "longtail",
        "longtail.plan": results / "longtail" / "plan.csv",
        "longtail.augmentations": results / "longtail" / "augmentations.csv",
        "longtail.test_outcomes": results / "longtail" / "test_outcomes.csv",
        "longtail.results": results / "longtail" / "results.csv",
        "longtail.bin_accuracy": results / "longtail" / "bin_accuracy.csv",
        "longtail.table": results / "longtail" / "table",
        "longtail.differences": results / "longtail" / "differences.csv",
        "longtail.added_to_logit_adjustment": results / "longtail" / "added_to_logit_adjustment.csv",
        "longtail.gain_by_class": results / "longtail" / "gain_by_class.csv",
        "ada.folder": results / "ada",
        "ada.choices": results / "ada" / "choices.csv",
        "ada.cost": results / "ada" / "cost.csv",
        "benchmarks.folder": results / "benchmarks",
        "benchmarks.throughput": results / "benchmarks" / "throughput.csv",
        "benchmarks.longtail_budget": results / "benchmarks" / "longtail_budget.csv",
        "benchmarks.stock_pipeline": results / "benchmarks" / "stock_pipeline.csv",
        "benchmarks.oracle_reference": results / "benchmarks" / "oracle_reference.csv",
        "benchmarks.denoising_steps": results / "benchmarks" / "denoising_steps.csv",
        "benchmarks.denoising_steps_store": results / "benchmarks" / "denoising-steps-store",
        "benchmarks.episode_cost": results / "benchmarks" / "episode_cost.csv",
        "benchmarks.fewshot_evaluation": results / "benchmarks" / "fewshot_evaluation.json",
        "benchmarks.editing_store": results / "benchmarks" / "editing-store",
        "dataset.folder": results / "dataset",
        "dataset.class_sizes": results / "dataset" / "class_sizes.csv",
        "dataset.split_summary": results / "dataset" / "split_summary.csv",
        "companion.folder": results / "companion",
        "companion.judge_store": results / "companion" / "judge-store",
        "companion.judge_images": results / "companion" / "judge_images.csv",
        "companion.judge_curve_all_classes": results / "companion" / "judge_curve_all_classes.csv",
    }


@pytest.mark.parametrize("paths, results, figures", [
    ({"results": "results/mine", "figures": "figures/mine"}, "/project/results/mine", "/project/figures/mine"),
    ({"results": "/data/run", "figures": "/data/run/figures"}, "/data/run", "/data/run/figures"),
])
def test_every_folder_and_file_lands_where_the_run_writes_it(paths, results, figures):
    files = RunFiles.of({"root": "/project", "paths": paths})
    assert files.results == Path(results) and files.figures == Path(figures)
    for name, path in expected(Path(results)).items():
        assert attrgetter(name)(files) == path, name
    results = Path(results)
    assert files.settle_slice("fewshot-1shot-episodes-000-009").episodes == (
        results / "settle" / "fewshot-1shot-episodes-000-009" / "episodes.csv")
    benchmarks = files.benchmarks
    assert benchmarks.throughput_record("cpu-20260101-120000") == (
        results / "benchmarks" / "throughput-cpu-20260101-120000.json")
    assert benchmarks.editing("editing_steps") == results / "benchmarks" / "editing_steps.csv"
    assert benchmarks.editing_agreement("editing_steps") == results / "benchmarks" / "editing_steps_agreement.csv"
    assert benchmarks.editing_images("editing_steps") == results / "benchmarks" / "editing_steps_images.csv"


def test_every_named_file_is_checked_above():
    """A file added to `RunFiles` gets its expected place in `expected` too."""
    files = RunFiles(Path("/r"))
    named = {f"{part}.{name}" for part in ("fewshot", "longtail", "ada", "benchmarks", "dataset", "companion")
             for name, value in vars(type(getattr(files, part))).items() if isinstance(value, property)}
    named |= {name for name, value in vars(RunFiles).items() if isinstance(value, property)}
    named -= {"fewshot", "longtail", "ada", "benchmarks", "dataset", "companion"}
    assert named <= set(expected(Path("/r")))


def test_a_copy_of_results_has_the_same_layout_and_no_figures(tmp_path):
    published = RunFiles(tmp_path / "docs" / "results" / "embedded")
    assert published.figures is None
    assert published.fewshot.results == tmp_path / "docs" / "results" / "embedded" / "fewshot" / "results.csv"


def test_throughput_records_are_found_by_their_name(tmp_path):
    benchmarks = RunFiles(tmp_path).benchmarks
    benchmarks.folder.mkdir()
    for name in ("throughput-cpu-2.json", "throughput-cpu-1.json", "throughput.csv", "other-cpu-3.json"):
        (benchmarks.folder / name).write_text("{}")
    assert benchmarks.throughput_records() == [benchmarks.folder / "throughput-cpu-1.json",
                                               benchmarks.folder / "throughput-cpu-2.json"]
