"""Stage 5: the Whisper token list ESPnet's ``whisper_multilingual`` token type indexes, for the
model's family: ESPnet's own ``espnet2.bin.whisper_export_vocabulary`` writes the same lines, but
always 51,865 of them, one short for v3 (100 languages, 51,866 tokens: espnet_lalora.whisper_sizes).

    python -m espnet_lalora.bin.whisper_token_list --languages 100 --output tokens.txt
"""

import argparse
from pathlib import Path

from espnet_lalora.fileio import write_text_atomic

TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>, every 20 ms


def token_list(languages: int) -> list:
    import whisper.tokenizer

    hf = whisper.tokenizer.get_tokenizer(True, num_languages=languages).tokenizer
    size = hf.vocab_size + len(hf.get_added_vocab())
    # ESPnet writes a token's byte-level form with its space marker as a space
    tokens = [hf.convert_ids_to_tokens(i).replace("\u0120", " ") for i in range(size)]
    return tokens + [f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMPS)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", type=int, default=99, choices=(99, 100),
                        help="99: Whisper tiny to large-v2; 100: large-v3 and turbo")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    write_text_atomic(args.output, "".join(t + "\n" for t in token_list(args.languages)))


if __name__ == "__main__":
    main()
