"""The companion model: tokenizer, training (smoke-sized), exact resume, the oracle, the shipped weights."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from genie_utils import companion, data, generate, generator_pool, oracle, pairing, pipeline, profiles, training
from genie_utils.images import images_tensor
from genie_utils.openmoji import mirror_keeps_meaning
from genie_utils.recipe import Recipe


def test_tokenizer_gives_sd15_ids():
    tokenizer = companion.clip_tokenizer()
    assert tokenizer("a photo of a dog.").input_ids == [49406, 320, 1125, 539, 320, 1929, 269, 49407]
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77


def test_smoke_training_through_a_pack_writes_a_loadable_half_precision_pipeline(tmp_path):
    """The route of a GPU machine without the dataset: pack here, train from the pack, weights back, assemble here."""
    profile = profiles.load_profile("smoke")
    pack = companion.pack_training_data(profile)
    assert pack["pixels"].dtype == torch.uint8 and pack["token_ids"].shape == (2321, 77)
    read = companion.read_pack(companion.write_pack(pack, tmp_path / "pack.npz"))
    assert torch.equal(read["pixels"], pack["pixels"]) and read["prompts"] == pack["prompts"]
    assert torch.equal(read["pixels"][:3].float() / 127.5 - 1,
                       images_tensor(generator_pool.captioned_images(profile)[2].path[:3]))
    trained = companion.train_pack(read, tmp_path / "work", device="cpu", progress=False)
    back = companion.read_weights(companion.write_weights(trained, tmp_path / "weights"))
    for part, returned in zip(trained["parts"], back["parts"]):
        for (name, a), b in zip(part.state_dict().items(), returned.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-2, rtol=1e-2), name  # half precision on the way
    assert back["parts"][0].config.scaling_factor == trained["parts"][0].config.scaling_factor
    folder = companion.assemble_companion(back, tmp_path / "model")
    record = json.loads((folder / "training.json").read_text())
    assert record["training_images"] == 2321 and record["pool"] == "generator"
    assert record["settings"]["unet_steps"] == 4 and record["vae_scaling_factor"] > 0
    assert sorted(pd.read_csv(folder / "training_loss_denoiser.csv").step) == [1, 2, 3, 4]
    pipe, info = pipeline.load_pipeline(folder, device="cpu")
    assert pipe.unet.dtype == torch.float32  # half on disk, upcast on CPU
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 16
    from safetensors import safe_open
    with safe_open(str(next((folder / "unet").glob("*.safetensors"))), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16


def test_time_budget_lowers_the_steps_to_a_round_number_that_fits(tmp_path):
    assert companion.train.steps_within_budget(6000, 1000.0, 0.05) == 6000  # 18,000 fit
    assert companion.train.steps_within_budget(12000, 369.0, 0.0519) == 6000  # the shipped model's run
    with pytest.raises(RuntimeError, match="larger --time-budget"):
        companion.train.steps_within_budget(6000, 20.0, 0.05)
    with pytest.raises(FileNotFoundError, match="not a trained-weights folder"):
        companion.read_weights(tmp_path)
    with pytest.raises(FileNotFoundError, match="no training pack at .*pack --pack FILE"):
        companion.read_pack(tmp_path / "absent.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.npz is not a readable training pack"):
        companion.read_pack(tmp_path / "broken.npz")


def test_interrupted_training_resumes_exactly_and_only_with_the_same_settings(tmp_path):
    calls = []

    def run(workdir, stop_at=None, fingerprint=None):
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        data_x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))

        def loss_fn(step):
            if step == stop_at:
                raise KeyboardInterrupt
            calls.append(step)
            g = training.step_generator(0, 9, step)
            batch = data_x[torch.randint(32, (8,), generator=g)]
            return (model(batch) - batch.sum(1, keepdim=True)).pow(2).mean()

        return training.fit("toy", {"model": model}, list(model.parameters()), loss_fn, 12, 0.05, 4, workdir,
                            fingerprint or {"data": "toy"}, progress=False), model

    whole, model = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_at=9)  # checkpoint at step 8, then interrupted
    calls.clear()
    resumed, model_b = run(tmp_path / "b")
    assert calls == [8, 9, 10, 11]  # only the steps after the checkpoint
    assert [h["loss"] for h in resumed] == pytest.approx([h["loss"] for h in whole], rel=1e-6)
    assert torch.allclose(model.weight, model_b.weight)
    calls.clear()
    again, _ = run(tmp_path / "b")  # finished: nothing left to do
    assert len(again) == 12 and calls == []
    calls.clear()
    other, _ = run(tmp_path / "b", fingerprint={"data": "other"})  # other settings: start from scratch
    assert calls == list(range(12)) and len(other) == 12


def test_oracle_round_trip_and_augmentation(tmp_path, openmoji):
    network = oracle.oracle_network(98)
    judge = oracle.Oracle(network, sorted(openmoji.class_name.unique()), {"note": "untrained"})
    images = images_tensor(openmoji.path[:4])
    augmented = oracle.augment(images, torch.Generator().manual_seed(0))
    assert augmented.shape == images.shape and augmented.min() >= -1.001 and augmented.max() <= 1.001
    probabilities = judge.probabilities(images)
    assert probabilities.shape == (4, 98) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    loaded = oracle.load_oracle(judge.save(tmp_path / "oracle.pt"))
    assert loaded.classes == judge.classes and loaded.record == {"note": "untrained"}
    assert np.abs(loaded.probabilities(list(openmoji.path[:4])) - probabilities).max() < 1e-2  # fp16 weights
    with pytest.raises(FileNotFoundError, match="train one with"):
        oracle.load_oracle(tmp_path / "absent.pt")


def test_consistency_summary_and_crossover():
    table = pd.DataFrame({"noise_ratio": [0.3, 0.3, 0.8, 0.8], "p_target": [0.1, 0.1, 0.6, 0.4],
                          "p_source": [0.5, 0.3, 0.1, 0.1], "source_class": ["a"] * 4, "target_class": ["b"] * 4,
                          "oracle_class": ["a", "a", "b", "c"], "key": list("wxyz")})
    summary = oracle.consistency_summary(table).set_index("noise_ratio")
    assert summary.loc[0.8, "p_target"] == pytest.approx(0.5) and summary.loc[0.8, "oracle_target"] == 0.5
    assert summary.loc[0.3, "oracle_source"] == 1.0
    assert oracle.crossover(summary.reset_index()) == pytest.approx(0.3 + 0.5 * 0.3 / 0.7)


def test_random_pairs_never_pair_a_class_with_itself(openmoji):
    pairs = pairing.random_pairs(openmoji, ["heart", "animal-mammal", "face-smiling"], 50, seed=3)
    assert len(pairs) == 50 and (pairs.class_name != pairs.target_class).all()
    assert pairs.equals(pairing.random_pairs(openmoji, ["face-smiling", "heart", "animal-mammal"], 50, seed=3))


def test_sampling_weights_balance_classes():
    prompts = ["a"] * 8 + ["b"] * 2
    uniform, sqrt, balanced = (companion.train.sampling_weights(prompts, s) for s in ("uniform", "sqrt", "balanced"))
    share = lambda w: float(w[:8].sum() / w.sum())  # noqa: E731  share of class a in the draws
    assert share(uniform) == pytest.approx(0.8) and share(sqrt) == pytest.approx(2 / 3)
    assert share(balanced) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown sampling 'square'"):
        companion.train.sampling_weights(prompts, "square")


def test_pairs_per_target_weigh_every_class_the_same(openmoji):
    pairs = pairing.pairs_per_target(openmoji, ["heart", "animal-mammal", "food-fruit"], 4, seed=1)
    assert pairs.target_class.value_counts().to_dict() == {"heart": 4, "animal-mammal": 4, "food-fruit": 4}
    assert (pairs.class_name != pairs.target_class).all()
    table = pd.DataFrame({"noise_ratio": 0.8, "target_class": ["a"] * 3 + ["b"], "source_class": "c",
                          "p_target": [0.0, 0.0, 0.0, 1.0], "p_source": 0.0, "oracle_class": "c", "key": list("wxyz")})
    assert oracle.consistency_summary(table).p_target.iloc[0] == pytest.approx(0.25)
    assert oracle.consistency_summary(table, per_target_class=True).p_target.iloc[0] == pytest.approx(0.5)


def log_snr(alphas_cumprod):
    alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    return torch.log(alphas_cumprod / (1 - alphas_cumprod))


def test_noise_schedule_unshifted_is_sd15_and_shifted_matches_the_resolution_gap():
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    assert companion.architecture.noise_schedule() == companion.SD15_SCHEDULE
    sd = DDPMScheduler(**companion.SD15_SCHEDULE).alphas_cumprod
    assert torch.allclose(companion.architecture.sd15_alphas_cumprod().float(), sd)
    plain_shift = DDPMScheduler(**companion.architecture.noise_schedule(1.5)).alphas_cumprod
    assert torch.allclose(log_snr(plain_shift) - log_snr(sd), torch.tensor(1.5, dtype=torch.float64), atol=2e-3)
    config = companion.architecture.noise_schedule(companion.architecture.SCHEDULE_SHIFT, zero_terminal_snr=True)
    assert config["prediction_type"] == "v_prediction" and config["rescale_betas_zero_snr"]
    shifted = DDPMScheduler(**config).alphas_cumprod
    assert shifted[-1] == 0  # pure noise at t = 999, as text-to-image starts
    middle = slice(500, 801)  # the documented match: SD's log-SNR + 2 ln 4 within 0.25 at t = 500-800
    gap = log_snr(shifted)[middle] - log_snr(sd)[middle] - companion.architecture.RESOLUTION_GAP
    assert gap.abs().max() < 0.25
    sampler = DPMSolverMultistepScheduler(**config)
    assert 0 < sampler.alphas_cumprod[-1] < 1e-6  # diffusers keeps a sliver of signal to avoid an infinite sigma


def test_mirroring_only_where_it_keeps_the_meaning():
    keeps = mirror_keeps_meaning
    assert keeps("animal-mammal", "dog face") and keeps("food-fruit", "red apple")
    assert not keeps("arrow", "up arrow") and not keeps("alphanum", "input latin letters")
    assert not keeps("person-activity", "person walking facing right")  # its mirror is another identity
    assert not keeps("person-activity", "person walking facing right: light skin tone")


def test_smoke_finetuning_changes_the_schedule_keeps_the_vae_and_loads_in_stock_diffusers(tmp_path):
    from diffusers import StableDiffusionImg2ImgPipeline

    profile = profiles.load_profile("smoke")
    profile["companion"]["finetune"] = {"unet_steps": 3, "schedule_shift": 3.5, "zero_terminal_snr": True,
                                        "flip": True, "caption_templates": ["an emoji of a {}."], "unet_dropout": 0.1}
    pack = companion.pack_training_data(profile)
    assert pack["caption_ids"].shape == (1, 2321, 77)  # the smoke profile's own training has one template
    start = companion.train_pack(pack, tmp_path / "work", device="cpu", progress=False)
    vae_before = {k: v.clone() for k, v in start["parts"][0].state_dict().items()}
    unet_before = {k: v.clone() for k, v in start["parts"][1].state_dict().items()}
    tuned = companion.train.finetune_companion(profile, start, tmp_path / "work", "cpu", progress=False)
    assert all(torch.equal(vae_before[k], v) for k, v in tuned["parts"][0].state_dict().items())
    assert any(not torch.equal(unet_before[k], v) for k, v in tuned["parts"][1].state_dict().items())
    assert sorted(tuned["histories"]) == ["denoiser", "finetune", "vae"]
    assert len(tuned["histories"]["finetune"]) == 3
    folder = companion.assemble_companion(tuned, tmp_path / "model")
    record = json.loads((folder / "training.json").read_text())
    assert record["fine_tuned_from"]["settings"]["unet_steps"] == 4 and record["settings"]["unet_steps"] == 3
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == "v_prediction" and config["rescale_betas_zero_snr"]
    assert len(config["trained_betas"]) == 1000
    reread_twice = companion.assemble_companion(companion.train.read_model(folder), tmp_path / "again")
    for part in ("unet", "vae", "text_encoder"):  # a start loaded from disk leaves no path of this machine behind
        assert str(tmp_path) not in (reread_twice / part / "config.json").read_text()
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(folder)  # stock diffusers, no project code
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.unet.config.dropout == 0.1
    # the project's loop reads the schedule from the folder: r = 1 starts from pure noise at t = 999
    generator = generate.GenieGenerator.from_pretrained(folder, Recipe(num_inference_steps=5), device="cpu")
    scheduler = generator.scheduler()
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.alphas_cumprod[-1] < 1e-6
    reread = companion.train.read_model(folder)
    assert sorted(reread["histories"]) == ["denoiser", "finetune", "vae"]
    with pytest.raises(FileNotFoundError, match="not a companion model folder"):
        companion.train.read_model(tmp_path)


def write_snapshots(folder, steps) -> None:
    """Snapshot files s<step>.safetensors whose weights all equal their step, so that chosen weights show which."""
    from safetensors.torch import save_file

    _, unet, text_encoder = companion.architecture.build_parts(companion.TINY)
    names = [f"unet.{n}" for n, _ in unet.named_parameters()] + \
        [f"text_encoder.{n}" for n, _ in text_encoder.named_parameters()]
    for step in steps:
        save_file({n: torch.full_like(p, float(step)).half() for n, p in
                   zip(names, [*unet.parameters(), *text_encoder.parameters()])}, Path(folder) / f"s{step}.safetensors")


def fake_snapshot_benchmark(monkeypatch, measured: dict) -> list:
    """The editing benchmark replaced by made-up measurements per step (copy rate, P(target)), read off the weights;
    returns the steps measured, in order."""
    from genie_utils import editing

    steps_seen = []

    def fake_assemble(trained_parts, out):
        steps_seen.append(int(trained_parts["parts"][1].conv_in.weight.flatten()[0]))
        return out

    def fake_benchmark(profile, settings, per_class, ratios, seed, model=None, progress=True):
        copy_rate, p_target = measured[steps_seen[-1]]
        return pd.DataFrame({"group": ["all classes"], "noise_ratio": [0.8], "copy_rate": [copy_rate],
                             "p_target": [p_target], "hard_negative_rate": [0.0]}), None

    monkeypatch.setattr(companion.train, "assemble_companion", fake_assemble)
    monkeypatch.setattr(editing, "benchmark", fake_benchmark)
    return steps_seen


def test_snapshot_choice_is_the_lowest_copy_rate_among_those_that_reach_the_target(tmp_path, monkeypatch):
    """The choice among snapshots, with the benchmark replaced by made-up measurements per step."""
    measured = {2: (0.10, 0.55), 4: (0.30, 0.70), 6: (0.20, 0.65), 8: (0.20, 0.61)}  # step: (copy rate, P(target))
    write_snapshots(tmp_path, measured)
    trained = {"parts": companion.architecture.build_parts(companion.TINY), "record": {"settings": {}},
               "histories": {"finetune": [{"step": s, "loss": 1.0, "snapshot": f"s{s}.safetensors"} for s in measured]
                             + [{"step": 9, "loss": 1.0}]}}
    steps_seen = fake_snapshot_benchmark(monkeypatch, measured)
    profile = profiles.load_profile("smoke")
    chosen = companion.train.choose_snapshot(profile, trained, tmp_path, progress=False)
    assert steps_seen == [2, 4, 6, 8]  # every snapshot measured, the final weights without one are not
    # steps 4, 6, 8 reach P(target) 0.6; of those 6 and 8 copy least (0.2): the earlier, 6, is taken
    assert chosen["record"]["snapshot_choice"]["chosen_step"] == 6
    assert torch.all(chosen["parts"][1].conv_in.weight == 6) and all(torch.all(p == 6) for p in chosen["parts"][2].parameters())
    assert len(chosen["record"]["snapshot_choice"]["snapshots"]) == 4
    measured.update({4: (0.3, 0.5), 6: (0.2, 0.4), 8: (0.2, 0.3)})  # none reaches the target: highest P(target)
    steps_seen.clear()
    chosen = companion.train.choose_snapshot(profile, trained, tmp_path, progress=False)
    assert chosen["record"]["snapshot_choice"]["chosen_step"] == 2


def test_weights_trained_elsewhere_choose_among_the_snapshots_brought_back_and_the_final_weights(tmp_path, monkeypatch,
                                                                                               capsys):
    """Of snapshots at steps 2, 4, 6 and 8 (the last), only step 4's file was brought back: the choice measures it
    and the final weights (which are step 8's EMA), says which were left out, and never opens the absent files."""
    write_snapshots(tmp_path, [4])
    parts = companion.architecture.build_parts(companion.TINY)
    for part in parts[1:]:  # the final weights: all 8
        for p in part.parameters():
            torch.nn.init.constant_(p, 8.0)
    trained = {"parts": parts, "record": {"settings": {}},
               "histories": {"denoiser": [{"step": s, "loss": 1.0, "snapshot": f"s{s}.safetensors"} for s in (2, 4, 6, 8)]}}
    present = companion.train.snapshots_present(trained, tmp_path)
    assert [e.get("snapshot") for e in present["histories"]["denoiser"]] == [None, "s4.safetensors", None, "s8.safetensors"]
    assert "left out of the choice: steps [2, 6]" in capsys.readouterr().out
    steps_seen = fake_snapshot_benchmark(monkeypatch, {4: (0.1, 0.5), 8: (0.2, 0.7)})
    chosen = companion.train.choose_snapshot(profiles.load_profile("smoke"), present, tmp_path, progress=False)
    assert steps_seen == [4, 8]
    assert chosen["record"]["snapshot_choice"]["chosen_step"] == 8  # step 4 misses P(target) 0.6
    assert all(torch.all(p == 8) for p in chosen["parts"][2].parameters())
    assert chosen["parts"][1] is not parts[1]  # a copy: the trained parts stay as they were
    with pytest.raises(FileNotFoundError, match="no snapshot folder"):
        companion.train.snapshots_present(trained, tmp_path / "elsewhere")


def test_fit_writes_a_snapshot_at_each_checkpoint_and_names_it_in_the_history(tmp_path):
    model = nn.Linear(2, 1)
    written = []

    def loss_fn(step):
        return model(torch.ones(1, 2)).pow(2).sum()

    history = training.fit("toy", {"model": model}, list(model.parameters()), loss_fn, 5, 0.01, 2, tmp_path,
                           {"data": "toy"}, progress=False, snapshot=lambda path: written.append(path))
    assert [entry["step"] for entry in history if "snapshot" in entry] == [2, 4, 5]
    assert [p.name for p in written] == [entry["snapshot"] for entry in history if "snapshot" in entry]
    assert all(p.parent == tmp_path and p.name.startswith("toy-") for p in written)


def test_card_words_for_a_fine_tuned_record():
    from genie_utils.companion import card

    settings = {"caption_templates": ["an emoji of a {}."], "schedule_shift": 2.0, "zero_terminal_snr": True,
                "snr_gamma": 5.0, "flip": True, "unet_dropout": 0.1}
    choice = {"ratio": 0.8, "pairs_per_class": 1, "seed": 1, "setting": "20 steps, guidance 7.5", "chosen_step": 1200,
              "snapshots": [{"step": 400, "copy_rate": 0.06, "p_target": 0.34, "hard_negative_rate": 0.13},
                            {"step": 1200, "copy_rate": 0.12, "p_target": 0.35, "hard_negative_rate": 0.08}]}
    assert card.caption_words({"settings": settings}) == \
        "; also `an emoji of a {class name}.`, one drawn at random per image and step"
    assert card.caption_words({"settings": {}}) == "" and card.snapshot_words({"settings": {}}) == ""
    words = card.snapshot_words({"settings": settings, "snapshot_choice": choice})
    assert "step **1200**" in words and "| 400 | 0.060 | 0.340 | 0.130 |" in words
    assert "raised by 2 " in card.schedule_words(settings) and "v-prediction" in card.schedule_words(settings)
    assert card.schedule_words({}).startswith("SD's noise schedule (scaled_linear") and "epsilon" in card.schedule_words({})
    assert card.training_words(settings) == \
        " (min-SNR-5, EMA, v-prediction, mirrored images where the meaning allows, 2 caption templates, dropout 0.1)"


def test_the_pack_route_carries_a_new_schedule_mirrors_and_captions(tmp_path):
    """A profile whose [companion.training] sets the new schedule trains from scratch through pack / train /
    assemble (the GPU route) into a v-prediction, zero-terminal-SNR folder."""
    profile = profiles.load_profile("smoke")
    profile["companion"]["training"] = {**profile["companion"]["training"], "schedule_shift": 1.5,
                                        "zero_terminal_snr": True, "flip": True,
                                        "caption_templates": ["an emoji of a {}.", "{}"]}
    read = companion.read_pack(companion.write_pack(companion.pack_training_data(profile), tmp_path / "pack.npz"))
    assert read["caption_ids"].shape == (3, 2321, 77) and read["flippable"].dtype == torch.bool
    assert 0 < read["flippable"].float().mean() < 1  # some classes are never mirrored
    trained = companion.train_pack(read, tmp_path / "work", device="cpu", progress=False)
    folder = companion.assemble_companion(companion.read_weights(companion.write_weights(trained, tmp_path / "w")),
                                          tmp_path / "model")
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == "v_prediction" and config["rescale_betas_zero_snr"]
    record = json.loads((folder / "training.json").read_text())
    assert record["settings"]["caption_templates"] == ["an emoji of a {}.", "{}"] and record["settings"]["flip"]


def test_an_unknown_profile_is_a_usage_error(capsys):
    from genie_utils.companion.__main__ import main
    with pytest.raises(SystemExit) as exit:
        main(["card", "--profile", "fast"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "argument --profile: unknown profile 'fast'" in err and "'embedded'" in err


def test_renderings_add_the_generator_pool_s_emoji_in_another_style(tmp_path, monkeypatch, fake_emoji_style):
    """Another emoji set's drawings of generator-pool emoji follow the dataset's own, with their prompts, in the
    pack (counted per style) and in the copy test's reference; evaluation-pool emoji are never drawn."""
    from PIL import Image

    from genie_utils import editing, splits

    profile = profiles.load_profile("smoke")
    images, prompts, rows = generator_pool.captioned_images(profile)
    evaluation = splits.pool_images(profile, data.load_dataset(profile, progress=False), splits.EVALUATION)
    ids = list(rows.image_id[:2])
    red = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    fake_emoji_style({"package/LICENSE": b"MIT",
                      **{f"package/img/fake/64/{i.lower()}.png": red for i in ids + [evaluation.image_id.iloc[0]]}})
    monkeypatch.setattr(generator_pool, "styles_cache", lambda dataset_cache: tmp_path / "styles")
    more, more_prompts, more_rows = generator_pool.captioned_images(profile, ["fake"])
    assert len(more_rows) == len(rows) + 2 and list(more_rows.image_id[-2:]) == ids
    assert list(more_rows["style"][-3:]) == ["openmoji", "fake", "fake"] and more_prompts[-2:] == prompts[:2]
    assert torch.equal(more[:len(rows)], images) and more[-1, :, 32, 32].tolist() == [1.0, -1.0, -1.0]

    profile["companion"]["finetune"] = {"renderings": ["fake"]}
    assert generator_pool.companion_renderings(profile) == ["fake"]
    assert len(editing.training_images(profile).images) == \
        len(editing.training_images(profiles.load_profile("smoke")).images) + 2 + \
        sum(mirror_keeps_meaning(c, n) for c, n in zip(rows.class_name[:2], rows.name[:2]))
    pack = companion.read_pack(companion.write_pack(
        companion.pack_training_data(profile, {**profile["companion"]["training"], "renderings": ["fake"]}),
        tmp_path / "pack.npz"))
    assert pack["styles"] == {"openmoji": len(rows), "fake": 2} and len(pack["pixels"]) == len(rows) + 2
    assert pack["training"]["renderings"] == ["fake"]
    tagged = companion.pack_training_data(profile, {**profile["companion"]["training"], "renderings": ["fake"],
                                                    "style_captions": True})
    assert tagged["prompts"][:len(rows)] == prompts and tagged["prompts"][-2:] == \
        [prompts[i].replace(" a ", " a fake ", 1) for i in (0, 1)]  # "a photo of a fake <class>."
    with pytest.raises(ValueError, match="need the openmoji dataset, not 'folders'"):
        generator_pool.captioned_images(profiles.load_profile("paper"), ["google"])


def test_renderings_enter_a_fingerprint_only_when_set_and_the_card_names_their_licences():
    from genie_utils.companion import card
    from genie_utils.companion.train import TrainingSettings, fingerprint_settings

    assert "renderings" not in fingerprint_settings(TrainingSettings())  # earlier runs still resume
    assert fingerprint_settings(TrainingSettings(renderings=["google"]))["renderings"] == ("google",)
    words = card.style_words({"settings": {"renderings": ["google", "twitter"]}, "fine_tuned_from": {},
                              "styles": {"openmoji": 2321, "google": 2210, "twitter": 2209}})
    assert words.startswith("\n- The fine-tuning also shows the same generator-pool emoji")
    assert "Noto Emoji (Google), Apache-2.0 (2210 images, npm `emoji-datasource-google@16.0.0`)" in words
    assert "Twemoji (Twitter), CC-BY 4.0 (2209 images" in words
    assert "same identities, classes and prompts" in words
    tagged = card.style_words({"settings": {"renderings": ["google"], "style_captions": True}})
    assert tagged.startswith("\n- The training also") and "captions naming the set before the class" in tagged
    assert "(npm `emoji-datasource-google@16.0.0`)" in tagged  # no count in a record without one
    assert card.style_words({"settings": {}}) == ""
