"""Measured training memory on CPU against espnet_lalora.memory's estimate.

Each case runs in a fresh process: openai-whisper's encoder and decoder (the modules ESPnet's
Whisper wraps) of a size, random weights, the method of a config injected, then two training
steps (forward on 30-s features, cross-entropy over the tokens, backward, Adam). Reported:

- peak RSS growth from before the model is built to the end (``ru_maxrss``: weights, optimizer
  state, activations, allocator slack), against the estimate's total;
- the bytes autograd saved for the backward pass (every saved tensor's storage, once), against
  the estimate's activations.

    python bench/train_memory.py --size base --batch 2            # fp32 and fp32 + checkpointing
    python bench/train_memory.py --width 64 --batch 2 --amp       # a small random width, bf16
"""

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(dims: dict, config: str, batch: int, tokens: int, amp: bool, ckpt: bool) -> dict:
    import torch
    from torch import nn
    from torch.utils.checkpoint import checkpoint
    from whisper.model import AudioEncoder, TextDecoder

    from espnet_lalora.config import load_config
    from espnet_lalora.memory import Workload, training_memory
    from espnet_lalora.methods import method_of

    torch.manual_seed(0)
    mel = torch.randn(batch, dims["n_mels"], 3000)
    text = torch.randint(0, 50000, (batch, tokens + 1))
    before = rss_mb()
    model, model.encoder, model.decoder = nn.Module(), nn.Module(), nn.Module()
    model.encoder.encoders = AudioEncoder(dims["n_mels"], dims["n_audio_ctx"],
                                          dims["n_audio_state"], dims["n_audio_head"],
                                          dims["n_audio_layer"])
    model.decoder.decoders = TextDecoder(dims["n_vocab"], dims["n_text_ctx"],
                                         dims["n_text_state"], dims["n_text_head"],
                                         dims["n_text_layer"])
    for p in model.parameters():
        p.requires_grad_(False)
    method, conf = method_of(load_config(ROOT / config))
    method.inject(model, conf)
    if ckpt:
        for block in [*model.encoder.encoders.blocks, *model.decoder.decoders.blocks]:
            block.forward = (lambda f: lambda *a, **k: checkpoint(f, *a, use_reentrant=False,
                                                                  **k))(block.forward)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-4)
    saved = {}

    def pack(t):
        try:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    for _ in range(2):
        saved.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logits = model.decoder.decoders(text[:, :-1], model.encoder.encoders(mel))
            loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), text[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    total = sum(p.numel() for p in model.parameters())
    est = training_memory(dims, total, sum(p.numel() for p in trainable),
                          Workload(batch=batch, text_tokens=tokens, amp=amp, checkpointing=ckpt))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved_bytes = sum(n for ptr, n in saved.items() if ptr not in params)
    return dict(rss_growth_mb=rss_mb() - before, estimate_total_mb=est["total"] / 2**20,
                saved_mb=saved_bytes / 2**20, estimate_activations_mb=est["activations"] / 2**20)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default=None, help="a Whisper size (dims only; random weights)")
    parser.add_argument("--width", type=int, default=None, help="or a random v3-shaped width")
    parser.add_argument("--config", default="conf/train_lora.yaml")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CPU's AMP)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # JSON of one case, in a child process
    args = parser.parse_args()
    if args.one:
        case = json.loads(args.one)
        print(json.dumps(measure(**case)))
        return
    from espnet_lalora.whisper_sizes import size_of

    if args.size:
        dims, label = size_of(args.size).dims(), args.size
    else:
        width = args.width or 64
        dims = dict(size_of("large-v3").dims(), n_audio_state=width, n_text_state=width,
                    n_audio_head=2, n_text_head=2, n_audio_layer=4, n_text_layer=2)
        label = f"v3-shaped width {width}"
    print("| model | method | batch | AMP | ckpt | peak RSS growth MB | estimate total MB "
          "| saved for backward MB | estimate activations MB |\n" + "|" + " --- |" * 9)
    for ckpt in (False, True):
        case = dict(dims=dims, config=args.config, batch=args.batch, tokens=args.tokens,
                    amp=args.amp, ckpt=ckpt)
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(case)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {label} | {Path(args.config).stem} | {args.batch} | {args.amp} | {ckpt} | "
              f"{r['rss_growth_mb']:.0f} | {r['estimate_total_mb']:.0f} | {r['saved_mb']:.0f} | "
              f"{r['estimate_activations_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
