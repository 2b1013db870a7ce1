"""Training infrastructure: atomic checkpoints (safetensors + JSON only), optimizer/EMA/RNG round trips,
deterministic data order, LR schedule, NaN guard, bf16 detection."""

from __future__ import annotations

import json
import os

import pytest
import torch
from _training_fixtures import phantom_dir, tiny_run  # noqa: F401 - pytest fixture

from diffcxr.errors import DiffCXRError
from diffcxr.training import checkpoint, data_order, precision
from diffcxr.training.checkpoint import Checkpointer, TrainState
from diffcxr.training.data_order import epoch_permutation
from diffcxr.training.session import Session, TrainingDiverged


def _model_and_optimizer(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.9), weight_decay=0.03)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


def test_checkpoint_round_trip_without_pickle(tmp_path):
    from diffusers.training_utils import EMAModel

    model, opt, sched = _model_and_optimizer()
    ema = EMAModel(model.parameters(), decay=0.99, use_ema_warmup=True)
    ema.step(model.parameters())
    ck = Checkpointer(tmp_path / "ck", keep_last=2)
    path = ck.save(3, {"net": model}, opt, sched, ema, TrainState(step=3, epoch=1, batch_in_epoch=2))
    assert sorted(p.name for p in path.iterdir()) == ["ema.safetensors", "model.safetensors", "optimizer.safetensors",
                                                       "rng.safetensors", "state.json"]
    for f in path.iterdir():  # nothing pickled: safetensors or JSON only
        assert f.suffix in (".safetensors", ".json")
    expected_rng = torch.get_rng_state()
    model2, opt2, sched2 = _model_and_optimizer(seed=1)
    ema2 = EMAModel(model2.parameters(), decay=0.5)
    torch.manual_seed(123)
    state, meta = ck.load(ck.latest(), {"net": model2}, opt2, sched2, ema2)
    assert (state.step, state.epoch, state.batch_in_epoch) == (3, 1, 2)
    assert torch.equal(torch.get_rng_state(), expected_rng)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid in s1["state"]:
        for k in s1["state"][pid]:
            assert torch.equal(torch.as_tensor(s1["state"][pid][k]), torch.as_tensor(s2["state"][pid][k]))
    assert sched2.last_epoch == sched.last_epoch and sched2.get_last_lr() == sched.get_last_lr()
    assert ema2.decay == 0.99 and ema2.optimization_step == ema.optimization_step
    for a, b in zip(ema.shadow_params, ema2.shadow_params):
        assert torch.equal(a, b)


def test_keep_last_and_latest_pointer(tmp_path):
    model, opt, sched = _model_and_optimizer()
    ck = Checkpointer(tmp_path, keep_last=2)
    for step in (1, 2, 3, 4):
        ck.save(step, {"m": model}, opt, sched)
    assert [p.name for p in ck.list()] == ["checkpoint-00000003", "checkpoint-00000004"]
    assert (tmp_path / "latest").read_text().strip() == "checkpoint-00000004"
    ck.save(4, {"m": model}, opt, sched)  # re-saving a step replaces it atomically
    assert ck.latest().name == "checkpoint-00000004"


def _saved_at_step_1_then_changed(root):
    """A checkpointer in ``root`` with step 1 saved, the model changed afterwards; returns the step-1 weights."""
    model, opt, sched = _model_and_optimizer()
    ck = Checkpointer(root, keep_last=3)
    ck.save(1, {"m": model}, opt, sched, state=TrainState(step=1))
    at_step_1 = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return ck, model, opt, sched, at_step_1


@pytest.mark.parametrize("fail_at", ["optimizer", "rename", "pointer"])
def test_crash_mid_write_never_corrupts_latest(tmp_path, monkeypatch, fail_at):
    ck, model, opt, sched, good = _saved_at_step_1_then_changed(tmp_path)
    real_save, real_replace = checkpoint._save_tensors, os.replace

    def bad_save(tensors, path):
        if fail_at == "optimizer" and path.name == "optimizer.safetensors":
            path.write_bytes(b"half")  # a half-written file, then the "crash"
            raise OSError("disk full")
        return real_save(tensors, path)

    def bad_replace(src, dst):
        name = os.path.basename(str(dst))
        if (fail_at == "rename" and name.startswith("checkpoint-")) or (fail_at == "pointer" and name == "latest"):
            raise OSError("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint, "_save_tensors", bad_save)
    monkeypatch.setattr(checkpoint.os, "replace", bad_replace)
    with pytest.raises(OSError):
        ck.save(2, {"m": model}, opt, sched, state=TrainState(step=2))
    monkeypatch.undo()
    latest = ck.latest()
    if fail_at == "pointer":  # the new checkpoint was complete and in place; only the pointer is stale
        assert latest.name in ("checkpoint-00000001", "checkpoint-00000002")
    else:
        assert latest.name == "checkpoint-00000001"
        assert not (tmp_path / "checkpoint-00000002").exists()
    fresh, _, _ = _model_and_optimizer(seed=5)
    state, _ = ck.load(latest, {"m": fresh})
    if latest.name == "checkpoint-00000001":
        assert state.step == 1
        assert all(torch.equal(good[k], v) for k, v in fresh.state_dict().items())
    ck.save(3, {"m": model}, opt, sched, state=TrainState(step=3))  # the next save cleans the temp folders
    assert not list(tmp_path.glob(".tmp-*"))
    assert ck.latest().name == "checkpoint-00000003"


def test_data_order_depends_only_on_seed_and_epoch():
    a = epoch_permutation(50, seed=1, epoch=3)
    assert a == epoch_permutation(50, seed=1, epoch=3)
    assert sorted(a) == list(range(50))
    assert a != epoch_permutation(50, seed=1, epoch=4) and a != epoch_permutation(50, seed=2, epoch=3)
    # two ranks see disjoint shards of the same permutation
    r0 = data_order.rank_batches(50, 5, 1, 3, 0, 2)
    r1 = data_order.rank_batches(50, 5, 1, 3, 1, 2)
    assert not set(sum(r0, [])) & set(sum(r1, []))


def test_lr_warmup_then_constant_and_cosine(tmp_path):
    run = tiny_run("base.warmup_steps=4", "base.max_steps=10", "vlm.warmup_steps=2", "vlm.max_steps=10",
                   "vlm.lr=1e-3", "vlm.min_lr=1e-5")
    for stage, check in (("base", "constant"), ("vlm", "cosine")):
        session = Session(run, stage, tmp_path / stage, progress=False)
        opt = session.optimizer([torch.nn.Parameter(torch.zeros(1))])
        sched = session.lr_scheduler(opt)
        lrs = []
        for _ in range(10):
            lrs.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        if check == "constant":
            assert lrs[:4] == pytest.approx([0.5e-4, 1e-4, 1.5e-4, 2e-4]) and lrs[4:] == pytest.approx([2e-4] * 6)
        else:
            assert lrs[1] == pytest.approx(1e-3) and lrs[2] > lrs[5] > lrs[9] >= 1e-5


def test_bf16_detection_is_consistent():
    assert precision.resolve_mixed_precision("no", cpu=True) == "no"
    assert precision.resolve_mixed_precision("auto", cpu=True) in ("bf16", "no")
    assert precision.resolve_mixed_precision("auto", cpu=True) == ("bf16" if precision.bf16_supported("cpu") else "no")


def test_nan_loss_stops_with_clear_error_and_checkpoint_survives(tmp_path, phantom_dir):  # noqa: F811
    from diffcxr.training import train_stage

    def poison(session, state):
        if state.step == 2:
            with torch.no_grad():
                for p in session._models["vae"].parameters():
                    p.fill_(float("nan"))

    run = tiny_run("vae.max_steps=5", "vae.checkpoint_every=1")
    with pytest.raises(TrainingDiverged) as err:
        train_stage("vae", run, f"phantom:{phantom_dir}", tmp_path, progress=False, step_callback=poison)
    msg = str(err.value)
    assert "loss became nan at step 3" in msg and "checkpoint-00000002" in msg and "intact" in msg
    assert isinstance(err.value, DiffCXRError)
    ck = Checkpointer(tmp_path / "vae" / "checkpoints")
    assert ck.latest().name == "checkpoint-00000002"
    from diffcxr.models.configs import vae_kwargs
    from diffcxr.models.vae import make_vae

    vae = make_vae(**vae_kwargs(run.model_config()))
    state, meta = ck.load(ck.latest(), {"vae": vae})
    assert state.step == 2 and meta["stage"] == "vae"
    assert all(torch.isfinite(p).all() for p in vae.parameters())
    assert not (tmp_path / "vae" / "COMPLETE.json").exists()


def test_existing_run_needs_resume(tmp_path, phantom_dir):  # noqa: F811
    from diffcxr.training import train_stage

    run = tiny_run("vae.max_steps=1")
    train_stage("vae", run, f"phantom:{phantom_dir}", tmp_path, progress=False)
    with pytest.raises(DiffCXRError, match="--resume"):
        train_stage("vae", run, f"phantom:{phantom_dir}", tmp_path, progress=False)
    info = json.loads((tmp_path / "vae" / "COMPLETE.json").read_text())
    assert info["steps"] == 1



def test_resume_with_another_model_is_one_error_and_keeps_the_run_record(tmp_path, phantom_dir):  # noqa: F811
    from diffcxr.training import train_stage

    train_stage("vae", tiny_run("vae.max_steps=1"), f"phantom:{phantom_dir}", tmp_path, progress=False)
    record = (tmp_path / "vae" / "config.yaml").read_text()
    with pytest.raises(DiffCXRError, match=r"trained with model 'tiny', this command asks for 'cpu-mini' \(differs in adapter.knowledge_sides, image_size.*\); resume with the run's own model config"):
        train_stage("vae", tiny_run("vae.max_steps=2", "model=cpu-mini"), f"phantom:{phantom_dir}", tmp_path,
                    resume=True, progress=False)
    assert (tmp_path / "vae" / "config.yaml").read_text() == record

def test_resume_accepts_a_run_recorded_before_a_model_key_existed(tmp_path, phantom_dir):  # noqa: F811
    """A run whose config.yaml predates a model key (here ``adapter.knowledge_sides``) resumes: the key takes its
    default, which is the behaviour the run had."""
    import yaml

    from diffcxr.training import train_stage

    train_stage("vae", tiny_run("vae.max_steps=1"), f"phantom:{phantom_dir}", tmp_path, progress=False)
    path = tmp_path / "vae" / "config.yaml"
    record = yaml.safe_load(path.read_text())
    del record["model_resolved"]["adapter"]["knowledge_sides"]
    path.write_text(yaml.safe_dump(record))
    train_stage("vae", tiny_run("vae.max_steps=2"), f"phantom:{phantom_dir}", tmp_path, resume=True, progress=False)
    assert json.loads((tmp_path / "vae" / "COMPLETE.json").read_text())["steps"] == 2
    record["model_resolved"]["adapter"]["knowledge_sides"] = True  # a real difference still stops it
    path.write_text(yaml.safe_dump(record))
    with pytest.raises(DiffCXRError, match=r"differs in adapter.knowledge_sides\); add "
                       r"model.adapter.knowledge_sides=true to resume it as it was trained"):
        train_stage("vae", tiny_run("vae.max_steps=3"), f"phantom:{phantom_dir}", tmp_path, resume=True,
                    progress=False)
    # the override the error names resumes it
    train_stage("vae", tiny_run("vae.max_steps=3", "model.adapter.knowledge_sides=true"), f"phantom:{phantom_dir}",
                tmp_path, resume=True, progress=False)
    assert json.loads((tmp_path / "vae" / "COMPLETE.json").read_text())["steps"] == 3


@pytest.mark.parametrize("damage", ["truncated weights", "broken state.json", "truncated optimizer"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, caplog, damage):
    ck, model, opt, sched, at_step_1 = _saved_at_step_1_then_changed(tmp_path)
    newest = ck.save(2, {"m": model}, opt, sched, state=TrainState(step=2))
    if damage == "truncated weights":
        data = (newest / "model.safetensors").read_bytes()
        (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "broken state.json":
        (newest / "state.json").write_text('{"format": "diffcxr-checkpoint-1", "st')
    else:
        data = (newest / "optimizer.safetensors").read_bytes()
        (newest / "optimizer.safetensors").write_bytes(data[:20])
    fresh, fresh_opt, fresh_sched = _model_and_optimizer(seed=1)
    path, state = ck.load_newest_intact({"m": fresh}, fresh_opt, fresh_sched)
    assert path.name.endswith("00000001") and state.step == 1
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, at_step_1[k])
    assert [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]  # said once, as a warning


def test_resume_with_no_intact_checkpoint_is_one_clear_error(tmp_path):
    from diffcxr.errors import DiffCXRError

    model, opt, sched = _model_and_optimizer()
    ck = Checkpointer(tmp_path, keep_last=3)
    only = ck.save(1, {"m": model}, opt, sched, state=TrainState(step=1))
    (only / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DiffCXRError, match="no intact checkpoint"):
        ck.load_newest_intact({"m": model}, opt, sched)
    assert Checkpointer(tmp_path / "empty", keep_last=1).load_newest_intact({"m": model}) is None
