"""Write the ESPnet ``config.yaml`` of an untrained Whisper model (the zero-shot baseline).

It is the training config as ESPnet itself would write it, with the adapter removed and the
input padded to 30 s, as Whisper was trained. Decode it with ``asr_inference`` and no model file.
"""

import argparse
import sys
from pathlib import Path

import yaml

from espnet_lalora.quiet import quiet_espnet_imports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asr_config", required=True, type=Path)
    parser.add_argument("--token_list", required=True, type=Path)
    parser.add_argument("--whisper_model", default=None)
    parser.add_argument("--out", required=True, type=Path, help="config.yaml to write")
    args = parser.parse_args(argv)

    quiet_espnet_imports()
    from espnet_lalora.espnet_plugin import ASRTask

    espnet_args = ASRTask.get_parser().parse_args([
        "--config", str(args.asr_config), "--token_list", str(args.token_list),
        "--token_type", "whisper_multilingual", "--bpemodel", "whisper_multilingual",
    ])
    config = vars(espnet_args)
    config.pop("config", None)
    # the same baseline whatever the method: no trace of the adapter (a changed config would
    # make stage 10 decode the zero-shot model again)
    config["use_adapter"] = False
    config["adapter"], config["adapter_conf"] = "lora", {}
    if config.get("encoder") != "whisper" or config.get("decoder") != "whisper":
        sys.exit(f"error: --asr_config {args.asr_config}: the zero-shot baseline needs "
                 "encoder: whisper and decoder: whisper")
    config["encoder_conf"]["do_pad_trim"] = True
    if args.whisper_model:
        config["encoder_conf"]["whisper_model"] = args.whisper_model
        config["decoder_conf"]["whisper_model"] = args.whisper_model
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, allow_unicode=True, sort_keys=False)
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
