"""ESPnet's ``asr_inference`` with the espnet-lalora adapters registered, so that models trained
with an adapter (unmerged) load; merged models need only stock ``espnet2.bin.asr_inference``."""

from espnet_lalora.quiet import quiet_espnet_imports

quiet_espnet_imports()

import espnet_lalora.espnet_plugin  # noqa: E402,F401  (registers the adapters)
from espnet2.bin.asr_inference import main  # noqa: E402

if __name__ == "__main__":
    main()
