"""model.sam: sharpness-aware minimisation steps with the gradient taken at the weights moved uphill, leaves BatchNorm's
running statistics as the real weights make them, and trains through a real Trainer run, resumable."""

import torch
from conftest import TINY_SYNTHETIC, compose
from torch import nn

from mimic.models.sam import SAM
from mimic.train import run


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3))


def test_a_step_uses_the_gradient_at_the_weights_moved_uphill():
    x, y = torch.randn(16, 5, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    rho, lr = 0.3, 0.1
    net = _net()
    start = [p.detach().clone() for p in net.parameters()]
    stats = [b.clone() for b in (net[1].running_mean, net[1].running_var)]

    # by hand: g at w; w + rho g / |g|; the gradient there; plain SGD from w with it
    by_hand = _net()
    loss = nn.functional.cross_entropy(by_hand(x), y)
    grads = torch.autograd.grad(loss, list(by_hand.parameters()))
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(by_hand.parameters(), grads, strict=True):
            p.add_(g * rho / norm)
    moved = torch.autograd.grad(nn.functional.cross_entropy(by_hand(x), y), list(by_hand.parameters()))
    expected = [w - lr * g for w, g in zip(start, moved, strict=True)]

    sam = SAM(torch.optim.SGD(net.parameters(), lr=lr), rho=rho, net=net)
    calls = []

    def closure():
        sam.zero_grad()
        out = nn.functional.cross_entropy(net(x), y)
        out.backward()
        calls.append(sam.moved)
        return out

    returned = sam.step(closure)
    assert calls == [False, True]  # once at the weights, once moved uphill
    assert returned == loss  # the loss at the weights themselves
    for p, e in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p, e)
    plain_step = [w - lr * g for w, g in zip(start, grads, strict=True)]  # the gradient at w itself: not SAM's step
    assert max(float((p - q).detach().abs().max()) for p, q in zip(net.parameters(), plain_step, strict=True)) > 1e-4
    # BatchNorm's running statistics moved once (the first pass), as one plain step moves them
    plain = _net()
    plain(x)
    torch.testing.assert_close(net[1].running_mean, plain[1].running_mean)
    torch.testing.assert_close(net[1].running_var, plain[1].running_var)
    assert not torch.equal(net[1].running_mean, stats[0])
    assert net[1].momentum == 0.1  # put back


def test_its_state_is_the_wrapped_optimizers():
    net = _net()
    sgd = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sam = SAM(sgd, rho=0.05, net=net)
    x, y = torch.randn(8, 5), torch.arange(8) % 3

    def closure():
        sam.zero_grad()
        out = nn.functional.cross_entropy(net(x), y)
        out.backward()
        return out

    sam.step(closure)
    saved = sam.state_dict()
    assert saved == sgd.state_dict() and len(saved["state"]) == 6  # the momentum buffers are saved
    fresh = SAM(torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), rho=0.05, net=net)
    fresh.load_state_dict(saved)
    for k, buf in sgd.state.items():
        torch.testing.assert_close(fresh.state[k]["momentum_buffer"], buf["momentum_buffer"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(sam, lambda step: 0.5)
    assert scheduler.get_last_lr() == [0.05] and sgd.param_groups[0]["lr"] == 0.05  # a schedule reaches the base


def test_a_real_training_run_with_sam(tmp_path):
    overrides = TINY_SYNTHETIC + ["trainer.max_epochs=2", "trainer.log_every_n_steps=1", "model.sam=0.05"]
    results = run(compose("train", overrides, output_dir=tmp_path / "a"))
    state = torch.load(results["best_checkpoint"], weights_only=True)
    assert state["hyper_parameters"]["sam"] == 0.05
    assert state["optimizer_states"][0]["state"]  # SGD's momentum, saved through SAM
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    resumed = compose(
        "train", overrides[:-3] + ["trainer.max_epochs=3", "model.sam=0.05", f"ckpt_path={last}"], tmp_path / "b"
    )
    run(resumed)
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2


def test_with_mixup_both_passes_see_the_same_blend():
    from mimic.models.classifier import EmotionClassifier

    net = {"_target_": "mimic.models.small_cnn.small_cnn", "widths": [4, 8, 8], "hidden": 8}
    model = EmotionClassifier(net=net, class_names=["happy", "sad", "neutral"], mixup=0.4, sam=0.05)
    model._sam = SAM(torch.optim.SGD(model.parameters(), lr=0.1), 0.05, model.net)
    seen, forward = [], model.forward
    model.forward = lambda faces: seen.append(faces) or forward(faces)
    model.log_dict = lambda *a, **k: None
    batch = (torch.randn(8, 1, 48, 48), torch.arange(8) % 3)
    model.training_step(batch, 0)
    model._sam.moved = True
    model.training_step(batch, 0)
    model._sam.moved = False
    model.training_step(batch, 0)
    assert torch.equal(seen[0], seen[1])  # the second pass: the first pass's blend
    assert not torch.equal(seen[0], seen[2])  # the next step: a new one
