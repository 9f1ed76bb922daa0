"""`python -m genie_utils.companion [train|oracle|judge|card|all] --profile embedded` (`make companion`)."""
from __future__ import annotations

import argparse

from ..oracle import OracleSettings, train_oracle
from ..profiles import available_profiles, load_profile, resolve
from .card import judge, write_model_card
from .train import train_companion


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The companion model: train it (resumable), train the oracle, "
                                                 "judge GeNIe outputs, write the model card.")
    parser.add_argument("stage", nargs="?", default="all", choices=["train", "oracle", "judge", "card", "all"])
    parser.add_argument("--profile", default="embedded", choices=available_profiles())
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    if args.stage in ("train", "all"):
        print(train_companion(profile, device=args.device))
    if args.stage in ("oracle", "all"):
        spec = profile["oracle"]
        train_oracle(profile, resolve(profile, spec["output"]), OracleSettings(**spec.get("training", {})),
                     resolve(profile, spec["workdir"]))
    if args.stage in ("judge", "all"):
        print(judge(profile).to_string(index=False))
    if args.stage in ("card", "all"):
        print(write_model_card(profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
