"""AVA-TLS that trains every condition row: the pooling initialisation of the squeeze, the vision-aware local
loss, the image tower's patch tokens, and the released variant kept as an ablation."""

from __future__ import annotations

import pytest
import torch

from diffcxr.errors import DiffCXRError
from diffcxr.models.local_alignment import LocalAlignment, simsiam_loss, token_infonce
from diffcxr.models.report_encoder import ImageTower, ReportEncoder, TokenMeanPool, TokenSqueeze
from diffcxr.training.vlm import VLMObjective

REPORTS = ["No pleural effusion. Heart size normal.", "Moderate cardiomegaly with pulmonary edema.",
           "Large right pneumothorax.", "Small left effusion and basal atelectasis."]


def test_untrained_pooled_squeeze_equals_mean_pool():
    torch.manual_seed(0)
    x = torch.randn(3, 65, 16)
    mask = torch.ones(3, 64)
    mask[1, 20:] = 0
    pooled = TokenSqueeze(65, 78, 16, init="pooling")
    assert torch.equal(pooled(x, mask), TokenMeanPool(78)(x, mask))
    # its conv path starts as the same pooling: row 0 copies [CLS], rows 1.. are adaptive-average-pool windows
    conv_only = pooled.conv2(pooled.conv1(x))
    assert torch.allclose(conv_only[:, 0], x[:, 0])
    windows = torch.nn.functional.adaptive_avg_pool1d(x[:, 1:].transpose(1, 2), 77).transpose(1, 2)
    assert torch.allclose(conv_only[:, 1:], windows, atol=1e-6)
    # the released initialisation is not pooling
    assert not torch.allclose(TokenSqueeze(65, 78, 16, init="random")(x, mask), TokenMeanPool(78)(x, mask))
    with pytest.raises(DiffCXRError, match="squeeze init"):
        TokenSqueeze(65, 78, 16, init="zeros")


def test_pooled_encoder_equals_mean_pool_encoder(tmp_path):
    pooled = ReportEncoder.tiny(max_length=64, seed=0, squeeze_init="pooling").eval()
    mean = ReportEncoder.tiny(max_length=64, seed=0, token_reduction="mean_pool").eval()
    with torch.no_grad():
        a, b = pooled.encode(REPORTS), mean.encode(REPORTS)
    assert torch.equal(a.condition_embeds, b.condition_embeds) and torch.equal(a.global_embeds, b.global_embeds)
    pooled.save_pretrained(tmp_path / "enc")
    loaded = ReportEncoder.from_pretrained(tmp_path / "enc")
    assert loaded.config.squeeze_init == "pooling" and loaded.squeeze.init == "pooling"
    assert torch.equal(loaded.encode(REPORTS).condition_embeds, a.condition_embeds)


def test_report_pooled_encoder_equals_report_pool_encoder_until_its_gate_opens(tmp_path):
    """squeeze_init="report_pooling" starts as token_reduction="report_pool" (windows over each report's own
    tokens), not as mean pooling over the padded context; a non-zero gate adds the conv path; it round-trips."""
    pooled = ReportEncoder.tiny(max_length=64, seed=0, squeeze_init="report_pooling").eval()
    report_pool = ReportEncoder.tiny(max_length=64, seed=0, token_reduction="report_pool").eval()
    mean = ReportEncoder.tiny(max_length=64, seed=0, token_reduction="mean_pool").eval()
    with torch.no_grad():
        a, b, c = pooled.encode(REPORTS), report_pool.encode(REPORTS), mean.encode(REPORTS)
        assert torch.equal(a.condition_embeds, b.condition_embeds) and torch.equal(a.global_embeds, b.global_embeds)
        assert not torch.allclose(a.condition_embeds, c.condition_embeds, atol=1e-3)
        pooled.squeeze.gate.fill_(0.5)
        opened = pooled.encode(REPORTS)
    assert not torch.allclose(opened.condition_embeds, a.condition_embeds, atol=1e-3)
    pooled.save_pretrained(tmp_path / "enc")
    loaded = ReportEncoder.from_pretrained(tmp_path / "enc").eval()
    assert loaded.config.squeeze_init == "report_pooling" and loaded.squeeze.mean_pool.windows == "report"
    with torch.no_grad():
        assert torch.equal(loaded.encode(REPORTS).condition_embeds, opened.condition_embeds)


def _objective(squeeze_init: str, local_weight: float, seed: int = 0):
    encoder = ReportEncoder.tiny(max_length=64, seed=seed, squeeze_init=squeeze_init)
    encoder.text_encoder.requires_grad_(False)  # as in cpu-mini: only the squeeze and the heads train
    tower = ImageTower(channels=(8, 16), embed_dim=encoder.hidden_size)
    local = LocalAlignment(encoder.hidden_size) if local_weight else None
    return VLMObjective(encoder, tower, 0.07, local, local_weight), encoder


def _vlm_step(objective, encoder, pixels, optimizer=None):
    objective.zero_grad(set_to_none=True)
    loss = objective(encoder.tokenize(REPORTS), pixels)
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    return loss


def test_every_conv2_row_gets_gradient_after_one_vlm_step():
    torch.manual_seed(1)
    pixels = torch.randn(len(REPORTS), 1, 32, 32)
    objective, encoder = _objective("pooling", 1.0)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-3)
    _vlm_step(objective, encoder, pixels, optimizer)
    assert encoder.squeeze.gate.abs().min() > 0  # the zero-initialised gate opened on the first step
    _vlm_step(objective, encoder, pixels)
    row_grad = encoder.squeeze.conv2.weight.grad.abs().sum(dim=(1, 2))
    assert row_grad.shape == (78,) and (row_grad > 0).all(), row_grad


def test_released_variant_leaves_condition_rows_untrained():
    """Random init and the token-0 loss alone: rows 1..77 of conv2 get exactly zero gradient (the flaw)."""
    torch.manual_seed(1)
    objective, encoder = _objective("random", 0.0)
    assert objective.local_alignment is None
    _vlm_step(objective, encoder, torch.randn(len(REPORTS), 1, 32, 32))
    row_grad = encoder.squeeze.conv2.weight.grad.abs().sum(dim=(1, 2))
    assert row_grad[0] > 0 and torch.count_nonzero(row_grad[1:]) == 0
    # the local loss alone reaches every condition row of the same (random) squeeze
    local, encoder = _objective("random", 1.0)
    _vlm_step(local, encoder, torch.randn(len(REPORTS), 1, 32, 32))
    assert (encoder.squeeze.conv2.weight.grad.abs().sum(dim=(1, 2))[1:] > 0).all()


def test_image_tower_patch_tokens():
    tower = ImageTower(channels=(8, 16), embed_dim=24).eval()
    x = torch.randn(2, 1, 32, 32)
    glob, patches = tower(x, return_patch_tokens=True)
    assert patches.shape == (2, 8 * 8, 24) and glob.shape == (2, 24)
    assert torch.allclose(glob, patches.mean(dim=1), atol=1e-6)
    # the global embedding is the projection of the globally pooled map (as before the patch tokens existed)
    assert torch.allclose(tower(x), tower.proj(tower.features(x).mean(dim=(2, 3))), atol=1e-5)


def test_local_losses_reward_alignment():
    torch.manual_seed(0)
    text = torch.randn(3, 10, 16)
    assert token_infonce(text, 2.0 * text) < token_infonce(text, torch.randn(3, 10, 16))
    other = torch.randn(3, 10, 16)  # per sample: the batch loss is the mean of the samples' losses
    assert torch.isclose(token_infonce(text, other), torch.stack([token_infonce(text[i:i + 1], other[i:i + 1])
                                                                  for i in range(3)]).mean())
    predictor = torch.nn.Identity()
    assert torch.isclose(simsiam_loss(text, text, predictor), torch.tensor(-1.0))
    losses = LocalAlignment(16)(text, torch.randn(3, 5, 16))
    assert losses.total.ndim == 0 and torch.isfinite(losses.total)
    assert torch.isclose(losses.total, losses.infonce + losses.simsiam)


def test_config_keys_select_the_variant():
    from diffcxr.models.configs import load_model_config
    from diffcxr.training.config import load_run_config

    cfg = load_model_config("cpu-mini")
    assert cfg["report_encoder"]["squeeze_init"] == "pooling"
    assert load_run_config("cpu-mini").vlm.local_loss_weight == 1.0
    released = load_run_config("cpu-mini", ["vlm.local_loss_weight=0", "model=cpu-mini-squeeze-released"])
    assert released.vlm.local_loss_weight == 0.0
    assert released.model_config()["report_encoder"]["squeeze_init"] == "random"
    with pytest.raises(DiffCXRError, match="squeeze_init"):
        load_model_config({"image_size": 64, "report_encoder": {"squeeze_init": "zeros"}})


def test_hard_negatives_raise_the_contrastive_losses_only_where_they_compete():
    from diffcxr.models.report_encoder import clip_loss

    torch.manual_seed(0)
    text, image = torch.randn(4, 16), torch.randn(4, 16)
    plain = clip_loss(text, image)
    assert torch.equal(clip_loss(text, image, hard_negatives=torch.empty(0, 16)), plain)
    assert clip_loss(text, image, hard_negatives=text[:2].clone()) > plain  # a twin as close as the report
    aligned = clip_loss(image, image)  # every report matches its image exactly: a far twin costs ~nothing
    assert 0 <= clip_loss(image, image, hard_negatives=-image[:2]) - aligned < 0.01
    tokens, attended = torch.randn(3, 6, 16), torch.randn(3, 6, 16)
    masked = token_infonce(tokens, attended, negative_tokens=tokens.clone(), negative_mask=torch.zeros(3, dtype=bool))
    assert torch.isclose(masked, token_infonce(tokens, attended))  # masked-out samples: no negatives at all
    assert token_infonce(tokens, attended, negative_tokens=tokens.clone()) > token_infonce(tokens, attended)


def test_side_swapped_twins_train_the_squeeze_to_tell_left_from_right():
    """The side-swapped hard negatives reach the squeeze's gate, and change the loss only through the reports
    that name a side."""
    from diffcxr.evaluation.laterality import swap_sides

    torch.manual_seed(1)
    pixels = torch.randn(len(REPORTS), 1, 32, 32)
    objective, encoder = _objective("pooling", 1.0)
    objective.eval()  # no dropout: the losses compare exactly
    swapped = [swap_sides(r) for r in REPORTS]
    mask = torch.tensor([a != b for a, b in zip(swapped, REPORTS)])
    assert mask.tolist() == [False, False, True, True]
    tokens, twins = encoder.tokenize(REPORTS), encoder.tokenize(swapped)
    plain = objective(tokens, pixels)
    with_twins = objective(tokens, pixels, twins, mask)
    assert with_twins > plain
    assert torch.equal(objective(tokens, pixels, twins, torch.zeros(4, dtype=bool)), plain)
    plain.backward()
    gate_plain = encoder.squeeze.gate.grad.clone()
    objective.zero_grad(set_to_none=True)
    with_twins.backward()  # the gate (zero at the start; conv2's rows follow once it opens) gets the twins' signal
    assert encoder.squeeze.gate.grad.abs().sum() > 0 and not torch.allclose(encoder.squeeze.gate.grad, gate_plain)


def test_side_swap_negatives_is_a_config_key():
    from diffcxr.training.config import load_run_config

    assert load_run_config("cpu-mini").vlm.side_swap_negatives is False
    assert load_run_config("cpu-mini", ["vlm.side_swap_negatives=true"]).vlm.side_swap_negatives is True
