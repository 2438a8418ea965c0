"""Training-step cost of LoRA on Whisper base: this project's LoRA against HF PEFT's, loralib's
(ESPnet's own ``lora`` adapter), S2-LoRA (its configuration), AdaLoRA (PEFT's layer at its
configuration, with its regularizer and allocator update) and full fine-tuning, over the frozen floor (forward plus the
activation-gradient backward, no trainable weight), side by side in one run; then the decoding
time of the merged and unmerged model over the base model.

    python bench/train_step_bench.py --threads 2 --rounds 12

Each round times one step of every variant in turn (same inputs), so machine noise falls on all of
them alike; the table gives the median step and the median over rounds of the ratio to the floor
of the same round. Memory: bytes that autograd keeps for the backward
(saved tensors, counted once per storage) and each variant's peak resident memory above the
resting model during a step, in a fresh process (``--memory VARIANT``). CPU time (both threads)
is given next to wall time: it is less sensitive to other load on the machine.
"""

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from espnet_lalora.methods import get_method
from espnet_lalora.methods.lora import block_linears
from espnet_lalora.methods.lora_layer import lora_modules

VARIANTS = ["floor", "this project", "this project, composed autograd", "peft", "loralib",
            "s2_lora", "adalora", "lang_experts", "full fine-tuning"]
RANK, ALPHA = 8, 16
SECONDS = [3.0, 2.6, 3.4, 2.2]  # a batch of 4 short utterances, as the recipe's sorted batches
TOKENS = 24


class WhisperASR(torch.nn.Module):
    """ESPnet's Whisper encoder and decoder under ESPnet's module names, with a plain
    cross-entropy loss (ESPnet's label smoothing costs the same in every variant)."""

    def __init__(self):
        super().__init__()
        from espnet2.asr.decoder.whisper_decoder import OpenAIWhisperDecoder
        from espnet2.asr.encoder.whisper_encoder import OpenAIWhisperEncoder

        self.encoder = OpenAIWhisperEncoder(input_size=1, whisper_model="base", dropout_rate=0.0,
                                            do_pad_trim=False)
        self.decoder = OpenAIWhisperDecoder(vocab_size=51865, encoder_output_size=512,
                                            whisper_model="base", dropout_rate=0.0)

    def forward(self, speech, speech_lengths, tokens):
        enc, enc_lengths, _ = self.encoder(speech, speech_lengths)
        lengths = torch.full((tokens.shape[0],), tokens.shape[1] - 1)
        logits, _ = self.decoder(enc, enc_lengths, tokens[:, :-1], lengths)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def batch():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([int(16000 * s) for s in SECONDS])
    speech = torch.randn(len(SECONDS), int(lengths.max()), generator=g) * 0.1
    tokens = torch.randint(0, 50000, (len(SECONDS), TOKENS), generator=g)
    return speech, lengths, tokens


def freeze_except(model, keep):
    for name, p in model.named_parameters():
        p.requires_grad = keep(name)


def build(variant, base, copy_base=True):
    model = copy.deepcopy(base) if copy_base else base
    names = block_linears(model)
    if variant == "floor":
        freeze_except(model, lambda n: False)
        # the backward reaches every block as in LoRA training: the activations entering the
        # encoder blocks and the decoder blocks require grad, no weight does
        model.encoder.encoders.conv2.register_forward_hook(lambda m, i, o: o.requires_grad_())
        model.decoder.decoders.token_embedding.register_forward_hook(
            lambda m, i, o: o.requires_grad_())
    elif variant == "this project":
        get_method("lora").create_adapter(model, rank=RANK, alpha=ALPHA)
    elif variant == "this project, composed autograd":  # the path taken with LoRA dropout
        get_method("lora").create_adapter(model, rank=RANK, alpha=ALPHA)
        for module in lora_modules(model).values():
            module.lora_dropout = torch.nn.Dropout(0.0)
    elif variant == "peft":
        from peft import LoraConfig, inject_adapter_in_model

        model = inject_adapter_in_model(LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                                   target_modules=names), model)
        freeze_except(model, lambda n: "lora_" in n)
    elif variant == "loralib":
        from espnet2.layers.create_adapter_fn import create_lora_adapter as espnet_lora

        espnet_lora(model, rank=RANK, alpha=ALPHA, dropout_rate=0.0, target_modules=names)
        freeze_except(model, lambda n: "lora_" in n)  # ESPnet leaves the base trainable
    elif variant == "s2_lora":  # conf/train_s2_lora.yaml: shared pairs, rank 16, fused layer
        method = get_method("s2_lora")
        method.create_adapter(model, rank=16, alpha=384.0)
        for m in model.modules():  # non-zero coefficients: the sparse state changes no cost
            if hasattr(m, "lora_coeff"):
                torch.nn.init.normal_(m.lora_coeff, std=0.1)
    elif variant == "adalora":  # conf/train_adalora.yaml: PEFT's SVDLinear at init_r 12, with
        # the orthogonality term in the loss and the allocator's update after every backward
        method = get_method("adalora")
        method.create_adapter(model, init_r=12, target_r=8, alpha=24.0, total_step=10_000)
        model.bench_loss_term = method.loss_term(model)
        counter = iter(range(1001, 10**6))
        model.bench_after_backward = lambda: model._adalora_tuner.update_and_allocate(next(counter))
    elif variant == "lang_experts":  # conf/train_lang_experts.yaml: 4 experts, and a batch
        # mixing all four languages (each row its own expert: the gathered, batched path)
        get_method("lang_experts").create_adapter(model, rank=RANK, alpha=ALPHA,
                                                  languages=["en", "es", "ja", "ko"])
        model.lang_router.route = torch.arange(len(SECONDS)) % 4
    elif variant == "full fine-tuning":
        freeze_except(model, lambda n: True)
    return model.train()


def step(model, inputs):
    """zero_grad, forward, backward, and a method's own per-step work (AdaLoRA's)."""
    model.zero_grad(set_to_none=True)
    loss = model(*inputs)
    term = getattr(model, "bench_loss_term", None)
    (loss + term() if term else loss).backward()
    after = getattr(model, "bench_after_backward", None)
    if after:
        after()


def saved_bytes(model, inputs):
    """Bytes autograd keeps between forward and backward (each storage once)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(*inputs)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def memory_main(variant):
    """Peak resident memory above the resting model during a training step, in a fresh process
    (Linux: the peak is reset through /proc/self/clear_refs after a warm-up step; glibc is told
to return freed memory at once, so the resident size follows the live tensors)."""
    torch.manual_seed(0)
    model = build(variant, WhisperASR(), copy_base=False)
    inputs = batch()
    step(model, inputs)  # warm-up: one-time allocations are not the step's
    model.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    resting = _status_kib("VmRSS")
    step(model, inputs)
    print(json.dumps({"variant": variant, "peak_growth_mib": (_status_kib("VmHWM") - resting) / 1024}))


@torch.no_grad()
def decode_times(base, rounds):
    """Greedy decoding time of base, merged LoRA and unmerged LoRA on the same batch: B is left
    at zero, so all three emit the same tokens and only the layer structure differs."""
    from espnet_lalora.decoding import CachedWhisperDecoder, DecodeOptions, beam_search
    from espnet_lalora.methods.lora_layer import merge_lora

    unmerged = build("this project", base).eval()
    merged = copy.deepcopy(unmerged)
    merge_lora(merged)
    models = {"base": base.eval(), "merged LoRA": merged, "unmerged LoRA": unmerged}
    speech, lengths, _ = batch()
    prompt = [50258, 50259, 50359, 50363]
    options = DecodeOptions(beam_size=1, maxlenratio=0.5, max_tokens=40, repetition_guard=0)
    times = {k: [] for k in models}
    tokens = {}
    for _ in range(rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            enc, enc_lengths, _ = model.encoder(speech, lengths)
            decoder = CachedWhisperDecoder(model.decoder.decoders)
            results = beam_search(decoder, enc, enc_lengths, [prompt] * len(SECONDS), 50257, options)
            times[name].append(time.perf_counter() - t0)
            tokens[name] = [r.tokens for r in results]
    same = tokens["base"] == tokens["merged LoRA"] == tokens["unmerged LoRA"]
    return times, same


def ratio(samples, name, reference="floor"):
    """Median over rounds of the ratio to the reference of the same round: drifts cancel."""
    return statistics.median(a / b for a, b in zip(samples[name], samples[reference]))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--memory", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset (the floor is always measured)")
    parser.add_argument("--no_decode", action="store_true", help="skip the decoding table")
    args = parser.parse_args()
    chosen = ["floor"] + [v for v in args.variants.split(",") if v in VARIANTS and v != "floor"]
    torch.set_num_threads(args.threads)
    if args.memory:
        return memory_main(args.memory)

    torch.manual_seed(0)
    base = WhisperASR()
    inputs = batch()
    models = {v: build(v, base) for v in chosen}
    for model in models.values():  # warm-up
        step(model, inputs)
    times = {v: [] for v in chosen}
    cpu = {v: [] for v in chosen}
    for r in range(args.rounds):
        for v, model in models.items():
            t0, c0 = time.perf_counter(), time.process_time()
            step(model, inputs)
            times[v].append(time.perf_counter() - t0)
            cpu[v].append(time.process_time() - c0)
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    saved = {v: saved_bytes(m, inputs) for v, m in models.items()}
    peak = {}
    for v in chosen:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads),
                              "--memory", v], capture_output=True, text=True, check=True, env=env)
        peak[v] = json.loads(out.stdout.strip().splitlines()[-1])["peak_growth_mib"]


    print(f"\nWhisper base, batch of {len(SECONDS)} utterances ({'/'.join(map(str, SECONDS))} s, "
          f"{TOKENS} tokens), rank {RANK} on all {len(block_linears(base))} block linears, "
          f"{args.threads} threads, median of {args.rounds} rounds, torch {torch.__version__}\n")
    print("| variant | trainable | step (ms) | over the floor | CPU time over the floor "
          "| saved for backward (MiB) | peak memory above the model (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for v in chosen:
        print(f"| {v} | {trainable(models[v]):,} | {1000 * statistics.median(times[v]):.0f} | "
              f"{ratio(times, v):.3f}x | {ratio(cpu, v):.3f}x | {saved[v] / 2**20:.1f} | "
              f"{peak[v]:.1f} |")

    if args.no_decode:
        return
    decode, same = decode_times(base, max(3, args.rounds // 2))
    print(f"\nGreedy decoding of the same batch (at most 40 tokens; identical tokens: {same})\n")
    print("| model | time (ms) | over the base model |")
    print("| --- | --- | --- |")
    for name, t in decode.items():
        print(f"| {name} | {1000 * statistics.median(t):.0f} | {ratio(decode, name, 'base'):.3f}x |")


if __name__ == "__main__":
    main()
