"""ESPnet's ``asr_train`` with the espnet-lalora adapters registered (same options, same trainer)."""

from espnet_lalora.quiet import quiet_espnet_imports

quiet_espnet_imports()

from espnet_lalora.espnet_plugin import ASRTask  # noqa: E402


def main(cmd=None):
    ASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
