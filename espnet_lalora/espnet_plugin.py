"""Registration with ESPnet from the outside: the methods in ESPnet's adapter table, an
``ASRTask`` whose ``--adapter`` option accepts them and whose optimizer calls a method's per-step
hook, and a per-utterance Whisper language prompt. ESPnet's trainer, DDP, AMP and resume are used
as they are."""

import functools

import espnet2.tasks.asr
from espnet2.asr.encoder.whisper_encoder import OpenAIWhisperEncoder
from espnet2.layers import create_adapter as _create_adapter
from espnet2.text.whisper_token_id_converter import OpenAIWhisperTokenIDConverter

from espnet_lalora.methods import REGISTRY, adapter_table, get_method


def _per_utterance_language(tokens2ids):
    """ESPnet prefixes every training transcript with one fixed prompt, ``<|lang|><|transcribe|>
    <|notimestamps|>`` of ``whisper_language``. A multilingual corpus needs the utterance's own
    language: a transcript that starts with a language token (``<|ko|>...``, written by stage 4
    as ``text_whisper``) gets that language in its prompt instead."""

    @functools.wraps(tokens2ids)
    def wrapped(self, tokens):
        tokens = list(tokens)
        if tokens and tokens[0] in self.tokenizer.tokenizer.additional_special_tokens:
            lang_id = self.tokenizer.tokenizer.convert_tokens_to_ids(tokens[0])
            if lang_id in self.tokenizer.all_language_tokens:
                prompt = [lang_id] + list(self.tokenizer.sot_sequence_including_notimestamps[2:])
                return prompt + self.tokenizer.tokenizer.convert_tokens_to_ids(tokens[1:])
        return tokens2ids(self, tokens)

    wrapped._espnet_lalora = True
    return wrapped


def _mel_bins_of_the_model(init):
    """ESPnet's Whisper encoder computes openai-whisper's 80 mel bins whatever it loads; v3 has
    128 (its first convolution says how many it takes)."""

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.n_mels = self.encoders.conv1.in_channels

    wrapped._espnet_lalora = True
    return wrapped


def register():
    _create_adapter.create_adapter_fn_table.update(adapter_table())
    if not getattr(OpenAIWhisperEncoder.__init__, "_espnet_lalora", False):
        OpenAIWhisperEncoder.__init__ = _mel_bins_of_the_model(OpenAIWhisperEncoder.__init__)
    if not getattr(OpenAIWhisperTokenIDConverter.tokens2ids, "_espnet_lalora", False):
        OpenAIWhisperTokenIDConverter.tokens2ids = _per_utterance_language(
            OpenAIWhisperTokenIDConverter.tokens2ids)


register()  # at import, also in processes that ESPnet spawns for DDP


class ASRTask(espnet2.tasks.asr.ASRTask):
    @classmethod
    def get_parser(cls):
        parser = super().get_parser()
        for action in parser._actions:
            if action.dest == "adapter":
                action.choices = sorted(_create_adapter.create_adapter_fn_table)
        return parser

    @classmethod
    def build_model(cls, args):
        # What the data tells the method (language experts: one per language of the training
        # data), set before the model is built, so that ESPnet's config.yaml records it.
        if getattr(args, "use_adapter", False) and args.adapter in REGISTRY:
            REGISTRY[args.adapter].complete_config(args)
        return super().build_model(args)

    @classmethod
    def build_optimizers(cls, args, model):
        optimizers = super().build_optimizers(args, model)
        if getattr(args, "use_adapter", False):  # only training builds optimizers
            method = get_method(args.adapter)
            hook = method.optimizer_step_hook(model, args)
            if hook is not None:
                add_step_hook(optimizers[0], hook)
            term = method.loss_term(model)
            if term is not None:
                add_loss_term(model, term, f"{method.name}_reg")
        return optimizers


def add_step_hook(optimizer, hook):
    """Call ``hook(optimizer)`` after each optimizer step that happened: ESPnet's trainer (and
    AMP's GradScaler) skip ``optimizer.step()`` when gradients are not finite, so skipped steps
    never count; gradients are still there (the trainer zeroes them after the step)."""
    return optimizer.register_step_post_hook(lambda opt, args, kwargs: hook(opt))


def add_loss_term(model, term, stat_name: str):
    """Add ``term()`` to the loss that ESPnet's model returns, in training only (validation
    scores stay comparable across methods), and log it as ``stat_name``. The model's loss is
    per-batch (ESPnet weights it by the batch size across DDP ranks), so a batch-independent
    term added here enters the averaged loss once."""

    def after_forward(module, inputs, output):
        if not module.training:
            return output
        extra = term()
        if isinstance(output, dict):
            output = dict(output, loss=output["loss"] + extra,
                          stats=dict(output["stats"], **{stat_name: extra.detach().reshape(1)}))
            return output
        loss, stats, weight = output
        return loss + extra, dict(stats, **{stat_name: extra.detach().reshape(1)}), weight

    return model.register_forward_hook(after_forward)
