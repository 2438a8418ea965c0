"""Stage 3: check a data dir and write it as 16 kHz mono 16-bit WAV under ``--out``.

Every utterance is read (path or ``cmd |``), mixed down and resampled; ids, transcripts, speakers
and languages are checked first (errors name the file and line). The output dir is built under a
temporary name and moved into place when complete.

A ``cmd |`` entry runs in a shell, so it is refused unless ``--allow_pipes true``: this stage
cannot know where a wav.scp came from. Stage 2's ``sox FILE ... speed F |`` entries need no
opt-in (they run without a shell).
"""

import argparse
import shutil
import sys
from multiprocessing import Pool
from pathlib import Path

from espnet_lalora.audio import AudioError, read_audio, to_16k, write_wav16
from espnet_lalora.datadir import (DataDirError, check_no_shell_commands, line_of, load_data_dir,
                                   replace_dir, spk2utt, write_map)
from espnet_lalora.progress import Progress


def _convert(job):
    utt, spec, out_wav, allow_pipes = job
    try:
        audio, rate, channels = read_audio(spec, allow_pipes)
        audio = to_16k(audio, rate)
        write_wav16(out_wav, audio)
        return utt, None, len(audio), rate, channels
    except AudioError as e:
        return utt, str(e), 0, 0, 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="input Kaldi data dir")
    parser.add_argument("--out", required=True, type=Path, help="output dir (dump/raw/<set>)")
    parser.add_argument("--nj", type=int, default=2, help="parallel jobs")
    parser.add_argument("--allow_pipes", choices=["true", "false"], default="false",
                        help="run wav.scp entries 'cmd ... |' in a shell (only for data you trust)")
    args = parser.parse_args(argv)
    allow_pipes = args.allow_pipes == "true"

    try:
        files = load_data_dir(args.data, require_lang=False)
        if not allow_pipes:  # every line, before anything runs or is written
            check_no_shell_commands(args.data / "wav.scp", files["wav.scp"],
                                    "rerun with --allow_pipes true (run.sh: --allow_pipes true)")
    except DataDirError as e:
        sys.exit(f"error: {e}")

    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    wav_final = (args.out / "data").resolve()
    jobs = [(utt, spec, tmp / "data" / f"{utt}.wav", allow_pipes)
            for utt, spec in files["wav.scp"].items()]
    progress = Progress(len(jobs), f"format {args.data}")
    num_samples, converted = {}, 0
    with Pool(max(1, args.nj)) as pool:
        for utt, error, n, rate, channels in pool.imap_unordered(_convert, jobs, chunksize=4):
            if error:
                pool.terminate()
                shutil.rmtree(tmp, ignore_errors=True)
                line = line_of(args.data / "wav.scp", utt)
                sys.exit(f"error: {args.data / 'wav.scp'}:{line}: utterance {utt}: {error}")
            num_samples[utt] = str(n)
            converted += rate != 16000 or channels != 1
            progress.update()

    write_map(tmp / "wav.scp", {u: str(wav_final / f"{u}.wav") for u in files["wav.scp"]})
    write_map(tmp / "utt2num_samples", num_samples)
    for name, mapping in files.items():
        if name != "wav.scp":
            write_map(tmp / name, mapping)
    write_map(tmp / "spk2utt", spk2utt(files["utt2spk"]))
    replace_dir(tmp, args.out)
    hours = sum(map(int, num_samples.values())) / 16000 / 3600
    print(f"formatted {len(jobs)} utterances ({hours:.2f} h; {converted} resampled or mixed down "
          f"to 16 kHz mono) into {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
