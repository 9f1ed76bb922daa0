"""The training loop shared by the companion model and the oracle: AdamW with a cosine schedule,
checkpoints written atomically, exact resume (batches are drawn from per-step seeds), a loss history."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm.auto import tqdm

from .store import atomic_write, spec_key


def step_generator(seed: int, stage: int, step: int) -> torch.Generator:
    """The random generator of one training step: a resumed run draws the batches an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 1_000_003 + stage * 100_003 + step)


def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's values: part of a training run's fingerprint."""
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def fit(name: str, modules: dict, parameters: list, loss_fn, steps: int, learning_rate: float,
        checkpoint_every: int, workdir, fingerprint: dict, ema=None, progress: bool = True,
        snapshot=None) -> list[dict]:
    """Optimise `loss_fn(step) -> loss` for `steps` steps with AdamW and a cosine schedule, checkpointing
    to `workdir/<name>-<hash of fingerprint>.ckpt` and resuming from it. `fingerprint` holds everything the
    run depends on (sizes, settings, a digest of the data): a run with other settings never resumes from
    this one's checkpoint. `snapshot(path)`, if given, writes the model as it is at each checkpoint to `path`
    (beside the checkpoint, named by its step), recorded in that step's history entry. Returns the loss history
    (step, loss, seconds, and snapshot where one was written)."""
    fingerprint = {**fingerprint, "steps": steps, "learning_rate": learning_rate}
    checkpoint = Path(workdir) / f"{name}-{spec_key(fingerprint)[:12]}.ckpt"
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(100, steps // 10), steps)
    history, start = [], 0
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        for key, module in modules.items():
            module.load_state_dict(state[key])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history, start = state["history"], state["step"]

    def save(step):
        state = {**{k: m.state_dict() for k, m in modules.items()}, "optimizer": optimizer.state_dict(),
                 "schedule": schedule.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                 "history": history, "step": step}
        atomic_write(checkpoint, lambda f: torch.save(state, f))

    for module in modules.values():
        module.train()
    began = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    with tqdm(total=steps, initial=start, desc=f"training {name}", disable=not progress) as bar:
        for step in range(start, steps):
            loss = loss_fn(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.step(parameters)
            value = loss.item()
            history.append({"step": step + 1, "loss": value, "seconds": time.perf_counter() - began})
            bar.set_postfix(loss=f"{value:.4f}")
            bar.update()
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                if snapshot is not None:
                    path = checkpoint.with_name(f"{checkpoint.stem}-step{step + 1:06d}.safetensors")
                    snapshot(path)
                    history[-1]["snapshot"] = path.name
                save(step + 1)
    for module in modules.values():
        module.eval()
    return history
