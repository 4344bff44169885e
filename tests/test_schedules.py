"""Learning-rate schedules: their values against the published formulas (hand-worked points) and against
torch.optim.lr_scheduler, their configs, and fit setting the rate per step or per epoch on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xpnet import SGD, Dense, Sequential, schedules
from xpnet.callbacks import Callback, LearningRateScheduler
from xpnet.schedules import Constant, CosineDecay, ExponentialDecay, StepDecay


# -- values, worked by hand from the formulas in the docstrings -------------------------------------
def test_constant_step_and_exponential_at_worked_points():
    assert [Constant(0.3)(t) for t in (0, 7, 1000)] == [0.3, 0.3, 0.3]
    step = StepDecay(1.0, step_size=3, gamma=0.5)
    assert [step(t) for t in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    exp = ExponentialDecay(2.0, gamma=0.5)
    assert [exp(t) for t in range(4)] == [2.0, 1.0, 0.5, 0.25]


def test_cosine_with_warmup_at_worked_points():
    s = CosineDecay(1.0, total=12, warmup=4, min_lr=0.2, start_factor=0.25)
    # warm-up: 0.25, then a quarter of the remaining 0.75 per step, reaching 1.0 at t = warmup
    assert [s(t) for t in range(5)] == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0], abs=1e-15)
    assert s(8) == pytest.approx(0.6, abs=1e-15)  # half-way through the cosine: (1.0 + 0.2) / 2
    assert s(6) == pytest.approx(0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2, abs=1e-15)
    assert s(12) == pytest.approx(0.2, abs=1e-15) and s(13) == 0.2 and s(10_000) == 0.2  # stays at min_lr
    plain = CosineDecay(0.1, total=10)
    assert plain(0) == 0.1 and plain(5) == pytest.approx(0.05, abs=1e-15) and plain(10) == 0.0


def test_a_schedule_is_a_pure_function_of_t():
    s = CosineDecay(0.1, total=50, warmup=5, per="step")
    forward = [s(t) for t in range(60)]
    backward = [s(t) for t in reversed(range(60))][::-1]
    assert forward == backward  # no hidden state: a resumed run asks for t out of order and gets the same


# -- against torch.optim.lr_scheduler ---------------------------------------------------------------
def _torch_lrs(make, lr, n):
    torch = pytest.importorskip("torch", reason="torch compares the schedules with torch.optim.lr_scheduler")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))], lr=lr)
    sched = make(torch.optim.lr_scheduler, opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", [
    (StepDecay(0.1, step_size=7, gamma=0.3), lambda S, o: S.StepLR(o, step_size=7, gamma=0.3), 40),
    (ExponentialDecay(0.1, gamma=0.93), lambda S, o: S.ExponentialLR(o, gamma=0.93), 40),
    (CosineDecay(0.1, total=30, min_lr=1e-3), lambda S, o: S.CosineAnnealingLR(o, T_max=30, eta_min=1e-3), 31),
    (CosineDecay(0.1, total=30, warmup=6, min_lr=1e-3, start_factor=0.01),
     lambda S, o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.01, total_iters=6),
                                     S.CosineAnnealingLR(o, T_max=24, eta_min=1e-3)], milestones=[6]), 31),
], ids=["step", "exponential", "cosine", "cosine-warmup"])
def test_schedules_match_torch(case):
    ours, make, n = case
    expected = _torch_lrs(make, 0.1, n)
    np.testing.assert_allclose([ours(t) for t in range(n)], expected, rtol=1e-10, atol=1e-15)


# -- configs: what a checkpoint stores ----------------------------------------------------------------
@pytest.mark.parametrize("s", [Constant(0.2, per="step"), StepDecay(0.1, 5, 0.5), ExponentialDecay(gamma=0.9),
                               CosineDecay(0.01, total=100, warmup=10, min_lr=1e-4, per="step")], ids=repr)
def test_config_round_trip_rebuilds_the_same_schedule(s):
    config = schedules.to_config(s)
    rebuilt = schedules.from_config(config)
    assert type(rebuilt) is type(s) and rebuilt.get_config() == s.get_config()
    bound = s.bind(lr=0.05, total=200)
    assert [schedules.from_config(schedules.to_config(bound))(t) for t in range(0, 300, 7)] == \
           [bound(t) for t in range(0, 300, 7)]


def test_get_takes_names_configs_and_instances():
    assert isinstance(schedules.get("cosine"), CosineDecay) and isinstance(schedules.get("STEP"), StepDecay)
    s = ExponentialDecay(0.1)
    assert schedules.get(s) is s
    assert schedules.get({"name": "constant", "lr": 0.1, "per": "step"})(3) == 0.1
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        schedules.get("linear")
    with pytest.raises(ValueError, match="unknown schedule name"):
        schedules.from_config({"lr": 0.1})


def test_bind_fills_only_what_is_missing_and_leaves_the_original_alone():
    s = CosineDecay(warmup=2)
    bound = s.bind(lr=0.5, total=10)
    assert (bound.lr, bound.total, s.lr, s.total) == (0.5, 10, None, None)
    assert CosineDecay(0.1, total=4).bind(lr=0.5, total=10).get_config()["lr"] == 0.1
    with pytest.raises(ValueError, match="no base lr"):
        s(0)
    with pytest.raises(ValueError, match="no total length"):
        CosineDecay(0.1)(0)


@pytest.mark.parametrize("make, match", [
    (lambda: StepDecay(0.1, step_size=0), "step_size must be an integer >= 1"),
    (lambda: ExponentialDecay(0.1, gamma=0.0), "gamma must be a finite number > 0"),
    (lambda: CosineDecay(0.1, total=5, warmup=5), "total .5. must be greater than warmup .5."),
    (lambda: CosineDecay(0.1, min_lr=0.2), "min_lr .0.2. must not exceed lr"),
    (lambda: Constant(-1.0), "lr must be a finite number > 0"),
    (lambda: Constant(0.1, per="batch"), "per must be 'epoch' or 'step'"),
    (lambda: Constant(0.1)(-1), "t must be an int >= 0"),
])
def test_bad_arguments_say_what_was_wrong(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- fit sets the rate, per step or per epoch ---------------------------------------------------------
class RecordingSGD(SGD):
    """SGD that notes the rate each step ran with."""

    def __init__(self, lr):
        super().__init__(lr)
        self.seen = []

    def step(self, params, grads):
        self.seen.append(self.lr)
        super().step(params, grads)


def _fit(dev, schedule, epochs=3, n=10, batch_size=4, callbacks=()):
    X = np.linspace(0, 1, n, dtype=np.float32).reshape(n, 1)
    model = Sequential([Dense(1, 1)], device=dev, seed=0)
    opt = RecordingSGD(0.2)
    history = model.fit(X, 2 * X, loss="mse", optimizer=opt, epochs=epochs, batch_size=batch_size, verbose=0,
                        schedule=schedule, callbacks=callbacks)
    return opt, history


def test_fit_sets_the_rate_before_every_step_from_the_global_step(dev):
    opt, history = _fit(dev, StepDecay(step_size=2, gamma=0.5, per="step"))  # 3 steps per epoch
    expected = [0.2 * 0.5 ** (t // 2) for t in range(9)]
    assert opt.seen == expected
    assert history["lr"] == [expected[2], expected[5], expected[8]]  # each epoch's last step
    assert all(type(v) is float for v in opt.seen)  # a host float: no device array, no sync


def test_fit_sets_the_rate_once_per_epoch_from_the_epoch(dev):
    opt, history = _fit(dev, ExponentialDecay(gamma=0.5))  # per="epoch" is the default
    assert opt.seen == [0.2] * 3 + [0.1] * 3 + [0.05] * 3
    assert history["lr"] == [0.2, 0.1, 0.05]


def test_fit_fills_in_the_cosine_total_from_epochs_and_steps():
    opt, _ = _fit("cpu", CosineDecay(warmup=2, per="step"), epochs=2)  # 6 steps: total = 6
    expected = CosineDecay(0.2, total=6, warmup=2)
    assert opt.seen == [expected(t) for t in range(6)]
    opt, _ = _fit("cpu", "cosine", epochs=4)  # per epoch: total = 4
    assert opt.seen == [v for t in range(4) for v in [CosineDecay(0.2, total=4)(t)] * 3]


def test_fit_without_a_schedule_keeps_the_rate_and_logs_it():
    opt, history = _fit("cpu", None)
    assert opt.seen == [0.2] * 9 and history["lr"] == [0.2] * 3


def test_fit_refuses_a_schedule_and_a_learning_rate_scheduler_together():
    with pytest.raises(ValueError, match="use one of them"):
        _fit("cpu", "step", callbacks=[LearningRateScheduler(lambda e, lr: lr)])


def test_callbacks_see_the_optimizer():
    seen = []

    class Peek(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.optimizer.lr)

    opt, _ = _fit("cpu", ExponentialDecay(gamma=0.5), callbacks=[Peek()])
    assert seen == [0.2, 0.1, 0.05]


# -- every argument checked at its bound, with a message naming the class, the argument and the value ---
@pytest.mark.parametrize("make, message", [
    (lambda: Constant(0.0), "Constant: lr must be a finite number > 0, got 0.0"),
    (lambda: Constant(True), "Constant: lr must be a finite number > 0, got True"),
    (lambda: Constant(math.inf), "Constant: lr must be a finite number > 0, got inf"),
    (lambda: Constant(0.1, per="batch"), "Constant: per must be 'epoch' or 'step', got 'batch'"),
    (lambda: StepDecay(0.1, step_size=0), "StepDecay: step_size must be an integer >= 1, got 0"),
    (lambda: StepDecay(0.1, step_size=2.0), "StepDecay: step_size must be an integer >= 1, got 2.0"),
    (lambda: StepDecay(0.1, gamma=0.0), "StepDecay: gamma must be a finite number > 0, got 0.0"),
    (lambda: ExponentialDecay(0.1, gamma=0.0), "ExponentialDecay: gamma must be a finite number > 0, got 0.0"),
    (lambda: CosineDecay(0.1, total=0), "CosineDecay: total must be an integer >= 1, got 0"),
    (lambda: CosineDecay(0.1, warmup=-1), "CosineDecay: warmup must be an integer >= 0, got -1"),
    (lambda: CosineDecay(0.1, min_lr=-0.5), "CosineDecay: min_lr must be a finite number >= 0, got -0.5"),
    (lambda: CosineDecay(0.1, start_factor=0.0),
     "CosineDecay: start_factor must be a finite number > 0 and <= 1, got 0.0"),
    (lambda: CosineDecay(0.1, start_factor=1.5),
     "CosineDecay: start_factor must be a finite number > 0 and <= 1, got 1.5"),
    (lambda: CosineDecay(0.1, total=5, warmup=5, per="step"),
     "CosineDecay: total (5) must be greater than warmup (5): the cosine needs at least one step after the warm-up"),
    (lambda: CosineDecay(0.1, min_lr=0.2), "CosineDecay: min_lr (0.2) must not exceed lr (0.1)"),
    (lambda: StepDecay(0.1)(-1), "StepDecay: t must be an int >= 0 (the epoch), got -1"),
    (lambda: StepDecay(0.1, per="step")(True), "StepDecay: t must be an int >= 0 (the step), got True"),
    (lambda: StepDecay(0.1)(2.0), "StepDecay: t must be an int >= 0 (the epoch), got 2.0"),
    (lambda: ExponentialDecay()(0),
     "ExponentialDecay: no base lr: pass lr=..., or give the schedule to fit, which takes the optimizer's lr"),
    (lambda: CosineDecay(0.1)(0), "CosineDecay: no total length: pass total=..., or give the schedule to fit, "
                                  "which fills it in from epochs (and steps per epoch when per='step')"),
])
def test_each_bad_argument_gets_the_whole_message(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_arguments_at_their_bounds_are_taken_and_the_defaults_are_the_documented_ones():
    assert StepDecay().get_config() == {"lr": None, "step_size": 10, "gamma": 0.1, "per": "epoch"}
    assert ExponentialDecay().get_config() == {"lr": None, "gamma": 0.95, "per": "epoch"}
    assert CosineDecay().get_config() == {"lr": None, "total": None, "warmup": 0, "min_lr": 0.0,
                                          "start_factor": 0.01, "per": "epoch"}
    edge = CosineDecay(0.1, total=1, warmup=0, min_lr=0.1, start_factor=1.0)  # min_lr == lr, factor 1
    assert [edge(t) for t in range(3)] == [0.1, 0.1, 0.1]
    assert StepDecay(0.5, step_size=1, gamma=1)(3) == 0.5
    assert type(StepDecay(0.5, step_size=1, gamma=1).gamma) is float
    assert type(StepDecay(0.5, step_size=1).step_size) is int
    assert Constant(1)(0) == 1.0 and type(Constant(1).lr) is float


def test_repr_is_the_call_that_rebuilds_it():
    s = StepDecay(0.1, step_size=3, per="step")
    assert repr(s) == "StepDecay(lr=0.1, step_size=3, gamma=0.1, per='step')"
    assert eval(repr(s)).get_config() == s.get_config()


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError) as info:
        schedules.get("linear")
    assert str(info.value) == ("unknown schedule 'linear': choose constant, step, exponential, cosine, or pass a "
                               "Schedule from xpnet.schedules (for arguments, e.g. CosineDecay(warmup=500, "
                               "per='step'))")
    with pytest.raises(ValueError) as info:
        schedules.from_config({"name": "linear", "lr": 0.1})
    assert str(info.value) == ("schedules.from_config: unknown schedule name 'linear' (known: constant, step, "
                               "exponential, cosine); the dict must come from schedules.to_config")
