"""Every registered optimiser against lecture 002's update rule written here in numpy, driven the
way the trainer drives it (``create_optimizer``, ``apply_decoupled_decay`` before ``step``); the
parameter groups, decoupled weight decay and the learning-rate scaling rule.

The objective is an elementwise quadratic f(W) = sum(h/2 W^2 + c W) with a different curvature
per entry, so its gradient h W + c is known in closed form and the adaptive rules differ per entry.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import trainlab.catalog  # noqa: F401  (fills every registry)
from trainlab.optim.optimizers import (
    OPTIMIZERS,
    OptimInfo,
    apply_decoupled_decay,
    create_optimizer,
    param_groups,
    scaled_lr,
)

H = np.array([[1.0, 4.0, 0.25], [2.0, 0.5, 8.0]])
CQ = np.array([[0.5, -1.0, 2.0], [-0.3, 0.1, 1.5]])
W0 = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
LR = 0.05
STEPS = 3


class Quadratic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(W0, dtype=torch.float64))
        self.register_buffer("h", torch.tensor(H))
        self.register_buffer("c", torch.tensor(CQ))

    def forward(self) -> torch.Tensor:
        return (0.5 * self.h * self.w**2 + self.c * self.w).sum()


def grad(w: np.ndarray) -> np.ndarray:
    return H * w + CQ


# --- lecture 002's rules: (params) -> step(w, dx, state) -> w ---------------------------------


def rule_sgd(lr):
    def step(w, dx, s):
        return w - lr * dx

    return step


def rule_momentum(lr, rho=0.9):
    def step(w, dx, s):
        s["vx"] = rho * s.get("vx", 0.0) + dx
        return w - lr * s["vx"]

    return step


def rule_nesterov(lr, rho=0.9):
    # torch's form: v = rho v + dx; x -= lr (dx + rho v)
    def step(w, dx, s):
        s["vx"] = rho * s.get("vx", 0.0) + dx
        return w - lr * (dx + rho * s["vx"])

    return step


def rule_adagrad(lr, eps=1e-10):
    def step(w, dx, s):
        s["grad_squared"] = s.get("grad_squared", 0.0) + dx * dx
        return w - lr * dx / (np.sqrt(s["grad_squared"]) + eps)

    return step


def rule_rmsprop(lr, decay_rate=0.99, eps=1e-8, rho=0.0):
    def step(w, dx, s):
        s["grad_squared"] = decay_rate * s.get("grad_squared", 0.0) + (1 - decay_rate) * dx * dx
        scaled = dx / (np.sqrt(s["grad_squared"]) + eps)
        s["buf"] = rho * s.get("buf", 0.0) + scaled
        return w - lr * s["buf"]

    return step


def rule_adam(lr, beta1=0.9, beta2=0.999, eps=1e-8):
    def step(w, dx, s):
        t = s["t"] = s.get("t", 0) + 1
        s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * dx
        s["v"] = beta2 * s.get("v", 0.0) + (1 - beta2) * dx * dx
        m_hat = s["m"] / (1 - beta1**t)
        v_hat = s["v"] / (1 - beta2**t)
        return w - lr * m_hat / (np.sqrt(v_hat) + eps)

    return step


# adamw = adam + the decoupled decay, which the driver below applies for every optimiser
RULES = {
    "sgd": (rule_sgd, [{}]),
    "momentum": (rule_momentum, [{}, {"rho": 0.5}]),
    "nesterov": (rule_nesterov, [{}, {"rho": 0.7}]),
    "adagrad": (rule_adagrad, [{}, {"eps": 1e-3}]),
    "rmsprop": (rule_rmsprop, [{}, {"decay_rate": 0.9, "eps": 1e-4}, {"rho": 0.5}]),
    "adam": (rule_adam, [{}, {"beta1": 0.8, "beta2": 0.95, "eps": 1e-4}]),
    "adamw": (rule_adam, [{}, {"beta1": 0.8, "beta2": 0.95, "eps": 1e-4}]),
}


def _check_rule(name: str) -> None:
    rule, param_sets = RULES[name]
    for weight_decay in (0.0, 0.2):
        for params in param_sets:
            model = Quadratic()
            opt = create_optimizer(
                name, params, model, LR, decay_all=False, weight_decay=weight_decay
            )
            step = rule(LR, **params)
            w, state = W0.copy(), {}
            for _ in range(STEPS):
                opt.zero_grad()
                model().backward()
                apply_decoupled_decay(opt)
                opt.step()
                dx = grad(w)  # the gradient at the weights before this step's decay
                w = step(w * (1.0 - LR * weight_decay), dx, state)
            np.testing.assert_allclose(
                model.w.detach().numpy(),
                w,
                rtol=1e-10,
                atol=1e-12,
                err_msg=f"{name} {params} weight_decay={weight_decay}",
            )
            assert not np.allclose(w, W0)


def _check_lbfgs_converges(name: str) -> None:
    """Full-batch L-BFGS with a closure reaches the optimum -c/h of the convex quadratic."""
    assert OPTIMIZERS.get(name).info["optim"].needs_closure
    model = Quadratic()
    opt = create_optimizer(name, {}, model, 1.0, decay_all=False, weight_decay=0.0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = model()
        loss.backward()
        return loss

    opt.step(closure)  # one step = up to max_iter=20 inner iterations with line search
    optimum = -CQ / H
    start_gap = float(np.abs(W0 - optimum).max())
    gap = float(np.abs(model.w.detach().numpy() - optimum).max())
    assert gap < 1e-4 < start_gap
    assert model().item() == pytest.approx(float((-0.5 * CQ**2 / H).sum()), abs=1e-9)


CLOSURE_CHECKS = {"lbfgs": _check_lbfgs_converges}


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_update_matches_lecture_rule(name: str) -> None:
    if name in RULES:
        _check_rule(name)
    elif name in CLOSURE_CHECKS:
        CLOSURE_CHECKS[name](name)
    else:
        pytest.fail(f"optimizer {name!r} is registered but has no reference rule in this test")


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optim_info(name: str) -> None:
    info = OPTIMIZERS.get(name).info["optim"]
    assert isinstance(info, OptimInfo)
    assert info.needs_closure == (name in CLOSURE_CHECKS)
    assert info.native_decoupled_decay == (name == "adamw")
    assert OPTIMIZERS.get(name).summary  # listed with a one-line description


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_recipe_params_are_accepted_by_build(name: str) -> None:
    """Every declared parameter can be passed back; the context is the parameters and lr."""
    params = OPTIMIZERS.get(name).params()
    assert "params" not in params and "lr" not in params
    opt = OPTIMIZERS.build(
        name, context={"params": [nn.Parameter(torch.zeros(2))], "lr": 0.1}, **params
    )
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups[0]["lr"] == 0.1


# ---------------------------------------------------------------------------------------------
# parameter groups and weight decay


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.conv1 = nn.Conv1d(4, 4, 3, bias=False)
        self.fc = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(3)
        self.prelu = nn.PReLU()
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gn(self.bn(self.conv(x)))
        x = self.conv1(x.mean(3)).mean(2)
        return self.frozen(self.prelu(self.ln(self.fc(x))))


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_param_groups_split_weights_from_biases_and_norms() -> None:
    net = Net()
    groups = param_groups(net, decay_all=False)
    assert [g["decay"] for g in groups] == [True, False]
    decay, no_decay = groups[0]["params"], groups[1]["params"]
    assert _ids(decay) == _ids([net.conv.weight, net.conv1.weight, net.fc.weight])
    assert _ids(no_decay) == _ids(
        [
            net.conv.bias,
            net.bn.weight,
            net.bn.bias,
            net.gn.weight,
            net.gn.bias,
            net.fc.bias,
            net.ln.weight,
            net.ln.bias,
            net.prelu.weight,
        ]
    )
    assert len(decay) + len(no_decay) == len(_ids(decay) | _ids(no_decay))  # no duplicates


def test_param_groups_decay_all() -> None:
    net = Net()
    groups = param_groups(net, decay_all=True)
    assert len(groups) == 1 and groups[0]["decay"] is True
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert _ids(groups[0]["params"]) == _ids(trainable)
    assert not _ids(groups[0]["params"]) & _ids(net.frozen.parameters())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_create_optimizer_sets_up_decay_per_group(name: str) -> None:
    net, wd = Net(), 0.1
    if OPTIMIZERS.get(name).info["optim"].needs_closure:
        wd = 0.0  # refused for full-batch optimisers (test_lbfgs_refuses_decoupled_weight_decay)
    opt = create_optimizer(name, {}, net, 0.01, decay_all=False, weight_decay=wd)
    native = OPTIMIZERS.get(name).info["optim"].native_decoupled_decay
    all_params = [p for g in opt.param_groups for p in g["params"]]
    assert _ids(all_params) == _ids(p for p in net.parameters() if p.requires_grad)
    for group in opt.param_groups:
        assert group["lr"] == 0.01
        expected = wd if group["decay"] else 0.0
        if native:
            assert group["weight_decay"] == expected and group["decoupled_wd"] == 0.0
        else:
            assert group["weight_decay"] == 0.0 and group["decoupled_wd"] == expected
    if name != "lbfgs":  # L-BFGS takes a single parameter group
        assert [g["decay"] for g in opt.param_groups] == [True, False]


def test_sgd_decoupled_decay_then_step() -> None:
    torch.manual_seed(0)
    net, lr, wd = Net(), 0.1, 0.05
    opt = create_optimizer("sgd", {}, net, lr, decay_all=False, weight_decay=wd)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    net(torch.randn(2, 3, 6, 6)).pow(2).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}
    apply_decoupled_decay(opt)
    opt.step()
    for n, p in net.named_parameters():
        if n.startswith("frozen"):
            torch.testing.assert_close(p.detach(), before[n])
            continue
        decayed = n in {"conv.weight", "conv1.weight", "fc.weight"}
        shrink = 1.0 - lr * wd if decayed else 1.0
        torch.testing.assert_close(p.detach(), before[n] * shrink - lr * grads[n], msg=n)


def test_decoupled_decay_with_zero_gradient_only_shrinks() -> None:
    net, lr, wd = nn.Linear(4, 2), 0.5, 0.1
    opt = create_optimizer("momentum", {}, net, lr, decay_all=False, weight_decay=wd)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    apply_decoupled_decay(opt)
    opt.step()
    torch.testing.assert_close(net.weight.detach(), w0 * (1 - lr * wd))
    torch.testing.assert_close(net.bias.detach(), b0)


def test_adamw_decays_natively_and_apply_is_a_no_op() -> None:
    net, lr, wd = nn.Linear(4, 2), 0.01, 0.3
    opt = create_optimizer("adamw", {}, net, lr, decay_all=False, weight_decay=wd)
    w0 = net.weight.detach().clone()
    apply_decoupled_decay(opt)
    torch.testing.assert_close(net.weight.detach(), w0)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradient: Adam's step is 0, only the decay moves the weights
    torch.testing.assert_close(net.weight.detach(), w0 * (1 - lr * wd))
    assert [g["weight_decay"] for g in opt.param_groups] == [wd, 0.0]


def test_decay_follows_the_current_lr() -> None:
    net = nn.Linear(3, 3, bias=False)
    opt = create_optimizer("sgd", {}, net, 1.0, decay_all=True, weight_decay=0.1)
    w0 = net.weight.detach().clone()
    opt.param_groups[0]["lr"] = 0.5  # as the trainer's schedule does
    apply_decoupled_decay(opt)
    torch.testing.assert_close(net.weight.detach(), w0 * (1 - 0.5 * 0.1))


# ---------------------------------------------------------------------------------------------
# learning-rate scaling (Goyal et al.)


def test_scaled_lr_rules() -> None:
    assert scaled_lr(0.1, 1024, 256, "linear") == pytest.approx(0.4)
    assert scaled_lr(0.1, 64, 256, "linear") == pytest.approx(0.025)
    assert scaled_lr(0.1, 1024, 256, "sqrt") == pytest.approx(0.2)
    assert scaled_lr(0.1, 128, 512, "sqrt") == pytest.approx(0.05)
    assert scaled_lr(0.1, 1024, 256, "none") == 0.1
    assert scaled_lr(0.1, 1024, None, "linear") == 0.1
    assert scaled_lr(0.3, 256, 256, "sqrt") == pytest.approx(0.3)
    assert scaled_lr(1.0, 2, 1, "sqrt") == pytest.approx(math.sqrt(2))


def test_lbfgs_refuses_decoupled_weight_decay() -> None:
    from trainlab.errors import RecipeError

    with pytest.raises(RecipeError, match="regularization.l2"):
        create_optimizer("lbfgs", {}, Quadratic(), 1.0, decay_all=False, weight_decay=0.1)


@pytest.mark.parametrize("name", ["sgd", "nesterov", "adagrad", "adam", "adamw"])
def test_the_fused_kernel_takes_the_same_steps(name: str) -> None:
    """optimizer.fused=true (torch's fused kernel, on the CPU here) keeps the groups, their
    decay and their lr, and updates the weights as the per-tensor loop does."""
    torch.manual_seed(0)  # no batch norm: Adam would blow its rounding-noise gradients up
    nets = [nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 2))]
    nets.append(copy.deepcopy(nets[0]))
    opts = [
        create_optimizer(name, {}, net, 0.05, decay_all=False, weight_decay=0.1, fused=fused)
        for net, fused in zip(nets, [False, True], strict=True)
    ]
    assert [g["fused"] for g in opts[1].param_groups] == [True, True]
    assert [g["decay"] for g in opts[1].param_groups] == [True, False]
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    for _ in range(5):
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            apply_decoupled_decay(opt)
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_auto_is_off_on_the_cpu_and_refused_where_torch_has_none() -> None:
    opt = create_optimizer(
        "adamw", {}, Net(), 0.01, decay_all=False, weight_decay=0.0, fused="auto"
    )
    assert not any(g["fused"] for g in opt.param_groups)
    from trainlab.errors import RecipeError

    with pytest.raises(RecipeError, match="optimizer.fused=true: rmsprop has no fused kernel"):
        create_optimizer("rmsprop", {}, Net(), 0.01, decay_all=False, weight_decay=0.0, fused=True)
