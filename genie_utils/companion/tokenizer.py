"""SD v1.5's CLIP tokenizer, rebuilt offline from the BPE vocabulary that open-clip-torch ships."""
from __future__ import annotations

import gzip
import importlib.resources

from open_clip.tokenizer import bytes_to_unicode
from transformers import CLIPTokenizer

CLIP_MERGES = 49152 - 256 - 2  # CLIP's BPE uses the first 48,894 merges of the file


def clip_tokenizer(model_max_length: int = 77):
    """SD v1.5's tokenizer, rebuilt offline from open-clip-torch's `bpe_simple_vocab_16e6.txt.gz`.

    "a photo of a dog." -> [49406, 320, 1125, 539, 320, 1929, 269, 49407], as in SD v1.5.
    """
    path = importlib.resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(str(path), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1:CLIP_MERGES + 1]
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)},
                         merges=[tuple(m.split()) for m in merges], model_max_length=model_max_length)
