"""Registration with ESPnet from the outside: adapter names in ESPnet's adapter table, and an
``ASRTask`` whose ``--adapter`` option accepts them. ESPnet's trainer, DDP, AMP and resume are
used as they are."""

import espnet2.tasks.asr
from espnet2.layers import create_adapter as _create_adapter

from espnet_lalora.methods import ADAPTERS


def register():
    _create_adapter.create_adapter_fn_table.update(ADAPTERS)


register()  # at import, also in processes that ESPnet spawns for DDP


class ASRTask(espnet2.tasks.asr.ASRTask):
    @classmethod
    def get_parser(cls):
        parser = super().get_parser()
        for action in parser._actions:
            if action.dest == "adapter":
                action.choices = sorted(_create_adapter.create_adapter_fn_table)
        return parser
