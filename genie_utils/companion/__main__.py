"""`python -m genie_utils.companion [train|oracle|judge|editing|card|all] --profile embedded` (`make companion`).

To train on another machine (a GPU) that has torch, diffusers and transformers but not the dataset:
    python -m genie_utils.companion pack --pack companion.npz            # here: the training data, one file
    python -m genie_utils.companion train --pack companion.npz --weights trained/ [--time-budget 400]   # there
    python -m genie_utils.companion assemble --weights trained/          # here: the model folder
    [--snapshots DIR]   # choose among the EMA snapshots brought back into DIR (and the last), as fine-tuning does
"""
from __future__ import annotations

import argparse

from .. import editing
from ..oracle import OracleSettings, train_oracle
from ..profiles import load_profile, profile_argument, resolve
from .card import judge, one_target_samples, write_model_card
from .train import (assemble_companion, choose_snapshot, finetune_companion, pack_training_data, read_model,
                    read_pack, read_weights, snapshots_present, train_companion, train_pack, write_pack, write_weights)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The companion model: train it (resumable), train the oracle, "
                                                 "judge GeNIe outputs, run the editing benchmark, write the model card.")
    parser.add_argument("stage", nargs="?", default="all",
                        choices=["train", "finetune", "oracle", "judge", "editing", "card", "all", "pack",
                                 "assemble"])
    parser.add_argument("--profile", default="embedded", type=profile_argument,
                        help="a profile name (genie_utils/profiles) or .toml file")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--pack", help="pack: write the training data here; train: train from this file and write "
                                       "the weights to --weights (no dataset or tokenizer needed)")
    parser.add_argument("--weights", help="train --pack: where the trained weights go; assemble: where they are")
    parser.add_argument("--workdir", help="train --pack: checkpoints (default: ./companion-training)")
    parser.add_argument("--snapshots", help="assemble: choose among the EMA snapshot files `train` wrote that were "
                                            "copied into this folder, and the final weights, by the editing "
                                            "benchmark's copy rate (choose_snapshot); default: the final weights")
    parser.add_argument("--time-budget", type=float, help="seconds: lower the denoiser's steps to fit (train)")
    parser.add_argument("--start", help="finetune: the model folder to start from (default: the profile's output, "
                                        "which is then replaced by the fine-tuned model)")
    args = parser.parse_args(argv)
    if args.stage == "train" and args.pack:  # the remote half: no dataset or tokenizer needed
        if not args.weights:
            parser.error("train --pack needs --weights DIR")
        trained = train_pack(read_pack(args.pack), args.workdir or "companion-training", args.device,
                             progress=False, time_budget=args.time_budget)
        print(write_weights(trained, args.weights))
        return 0

    profile = load_profile(args.profile)
    if args.stage == "pack":
        print(write_pack(pack_training_data(profile), args.pack or "companion-training.npz"))
        return 0
    if args.stage == "assemble":
        if not args.weights:
            parser.error("assemble needs --weights DIR (the folder `train --pack` wrote)")
        trained = read_weights(args.weights)
        if args.snapshots:
            trained = choose_snapshot(profile, snapshots_present(trained, args.snapshots), args.snapshots)
        print(assemble_companion(trained, resolve(profile, profile["companion"]["output"])))
        return 0
    if args.stage in ("train", "all"):
        print(train_companion(profile, device=args.device, time_budget=args.time_budget))
    if args.stage == "finetune":
        output = resolve(profile, profile["companion"]["output"])
        start = read_model(resolve(profile, args.start) if args.start else output)
        if "fine_tuned_from" in start["record"] and not args.start:
            parser.error(f"{output} is already fine-tuned: `make companion` trains and fine-tunes from scratch; to "
                         "fine-tune a model again, name it with --start")
        print(assemble_companion(finetune_companion(profile, start, device=args.device), output))
    if args.stage in ("oracle", "all"):
        spec = profile["oracle"]
        train_oracle(profile, resolve(profile, spec["output"]), OracleSettings(**spec.get("training", {})),
                     resolve(profile, spec["workdir"]))
    if args.stage in ("judge", "all", "finetune"):  # the model's evidence, anew for new weights
        print(judge(profile).to_string(index=False))
    if args.stage in ("editing", "all", "finetune"):
        folder = resolve(profile, profile["companion"]["output"])
        summary = editing.benchmark(profile, editing.profile_settings(profile), model=folder)[0]
        summary.to_csv(folder / "editing.csv", index=False)
        print(editing.target_check(summary[summary.setting == summary.setting.iloc[-1]]).to_string(index=False))
        print(one_target_samples(profile, folder))
    if args.stage in ("card", "all", "finetune"):
        print(write_model_card(profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
