"""This project's PyTorch beam search against its version at another git revision, on the same
encoder outputs, interleaved (A, B, B, A, ...), median seconds per batch and whether every result
is the same (tokens and score). For a change of the search itself (issue 30's rebuild):

  cd egs2/mini_multi/asr1    # after a run: its exp/ and dump/ (the config's paths are relative)
  ../../../.venv/bin/python ../../../bench/search_ab.py --rev 3a6d595 --data dump/raw/test

Zero-shot Whisper base (the ``--config`` of a zero-shot experiment or, by default, the one
run.sh writes), each utterance encoded once as the model reads it (only the search is timed),
batches of --batch_size, both rankings (ESPnet's and openai-whisper's).
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from espnet_lalora import decoding  # noqa: E402
from espnet_lalora.datadir import read_map  # noqa: E402


def module_at(rev: str):
    """espnet_lalora/decoding.py as it was at ``rev``, imported under another name."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:espnet_lalora/decoding.py"],
                            capture_output=True, text=True)
    if source.returncode:
        sys.exit(f"error: --rev {rev}: {source.stderr.strip()}")
    path = Path(tempfile.mkdtemp()) / "decoding_at_rev.py"
    path.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location("decoding_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", required=True, help="the git revision to compare with")
    parser.add_argument("--data", type=Path, required=True, help="a data dir (wav.scp, utt2lang)")
    parser.add_argument("--config", type=Path,
                        default=Path("exp/asr_zero_shot_whisper_base/config.yaml"))
    parser.add_argument("--max_utts", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.config.is_file():
        sys.exit(f"error: --config {args.config}: not found (run the default recipe first)")
    torch.set_num_threads(args.threads)
    from espnet_lalora.transcriber import WhisperTranscriber, load_model

    old = module_at(args.rev)
    transcriber = WhisperTranscriber(load_model(args.config, None, "cpu"))
    wavs, langs = read_map(args.data / "wav.scp", "audio"), read_map(args.data / "utt2lang", "lang")
    keys = sorted(wavs)[:: max(1, len(wavs) // args.max_utts)][:args.max_utts]
    encoded = [transcriber.encode(soundfile.read(wavs[k], dtype="float32")[0]) for k in keys]
    prompts = [transcriber.prompt(langs[k]) for k in keys]
    eot = transcriber.whisper_tokenizer.eot
    seconds = {(r, v): [] for r in ("espnet", "whisper") for v in ("A: this tree", "B: --rev")}
    same = {r: True for r in ("espnet", "whisper")}
    for round_no in range(args.rounds):
        for start in range(0, len(keys), args.batch_size):
            enc = encoded[start:start + args.batch_size]
            lengths = torch.tensor([e.shape[0] for e in enc])
            audio = torch.nn.utils.rnn.pad_sequence(enc, batch_first=True)
            pr = prompts[start:start + args.batch_size]
            for ranking in ("espnet", "whisper"):
                order = [("A: this tree", decoding), ("B: --rev", old)]
                if (round_no + start // args.batch_size) % 2:
                    order.reverse()
                out = {}
                for name, module in order:
                    options = module.DecodeOptions(beam_size=5, ranking=ranking)
                    begin = time.perf_counter()
                    out[name] = module.beam_search(transcriber.decoder, audio, lengths, pr, eot,
                                                   options)
                    seconds[(ranking, name)].append(time.perf_counter() - begin)
                a, b = out["A: this tree"], out["B: --rev"]
                same[ranking] &= all(x.tokens == y.tokens and abs(x.score - y.score) < 1e-4
                                     for x, y in zip(a, b))
    print(f"{len(keys)} utterances of {args.data}, batches of {args.batch_size}, {args.rounds} "
          f"rounds, {args.threads} threads, beam 5\n")
    print("| ranking | version | median s per batch | same results |")
    print("|---|---|---|---|")
    for (ranking, name), values in seconds.items():
        print(f"| {ranking} | {name} | {statistics.median(values):.3f} | {same[ranking]} |")


if __name__ == "__main__":
    main()
