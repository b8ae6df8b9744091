"""Noise schedules and their coefficient tables (ddpm.schedule)."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given

from ddpm import Diffusion, ScheduleTables, cosine_betas, linear_betas, make_betas
from strategies import dtypes, schedules


@given(spec=schedules(), dtype=dtypes)
def test_tables_are_finite_and_beta_tilde_is_at_most_beta(spec, dtype):
    tables = spec.build(dtype).tables
    for name, table in vars(tables).items():
        assert table.dtype == dtype, name
        assert table.shape == (spec.steps,), name
        assert torch.isfinite(table).all(), f"{name} has NaN or inf"
    assert (tables.beta_tilde <= tables.beta).all()
    assert tables.beta_tilde[0] == 0.0
    assert tables.alpha_bar_prev[0] == 1.0


@given(spec=schedules())
def test_tables_follow_their_definitions(spec):
    """Each table against its definition, recomputed in exact rational arithmetic from the same betas."""
    tables = spec.build(torch.float64).tables
    alpha_bar, running = [], Fraction(1)
    for b in tables.beta.tolist():
        running *= 1 - Fraction(b)
        alpha_bar.append(running)
    prev = [Fraction(1)] + alpha_bar[:-1]
    beta = [Fraction(b) for b in tables.beta.tolist()]
    exact = {
        "alpha_bar": alpha_bar,
        "alpha_bar_prev": prev,
        "beta_tilde": [(1 - p) / (1 - a) * b for p, a, b in zip(prev, alpha_bar, beta)],
        "posterior_coef_xt": [(1 - p) / (1 - a) * float(1 - b) ** 0.5 for p, a, b in zip(prev, alpha_bar, beta)],
        "eps_coef": [b / float(1 - a) ** 0.5 for a, b in zip(alpha_bar, beta)],
    }
    for name, values in exact.items():
        expected = torch.tensor([float(v) for v in values], dtype=torch.float64)
        torch.testing.assert_close(getattr(tables, name), expected, rtol=1e-13, atol=0, msg=name)


def test_linear_schedule_is_the_tutorials():
    betas = linear_betas(2000, 1e-6, 0.01)
    assert betas.dtype == torch.float64
    assert betas[0].item() == pytest.approx(1e-6, abs=1e-18)
    assert betas[-1].item() == pytest.approx(0.01, abs=1e-15)
    assert torch.allclose(betas.diff(), torch.full((1999,), (0.01 - 1e-6) / 1999, dtype=torch.float64))


def test_cosine_schedule_follows_nichol_dhariwal():
    # Nichol & Dhariwal (2021), Eq. 17: alpha_bar_t = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) pi/2),
    # with the paper's offset s = 0.008 and betas clipped at 0.999 (written here, not read from ddpm).
    s, max_beta, steps = 0.008, 0.999, 100
    alpha_bar = ScheduleTables.from_betas(cosine_betas(steps)).alpha_bar
    f = [math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2 for t in range(steps + 1)]
    expected = torch.tensor([f[t + 1] / f[0] for t in range(steps)], dtype=torch.float64)
    unclipped = cosine_betas(steps) < max_beta
    assert unclipped[:-1].all()  # only the very last beta reaches the clip
    torch.testing.assert_close(alpha_bar[unclipped], expected[unclipped], rtol=1e-10, atol=1e-12)
    assert cosine_betas(steps)[-1].item() == max_beta
    assert (alpha_bar.diff() < 0).all()


def test_tiny_betas_keep_precision_in_float32():
    """1 - alpha_bar_0 = beta_0 = 1e-6 would be badly rounded if computed in float32."""
    tables = Diffusion(steps=2000, beta_start=1e-6, beta_end=0.01, dtype=torch.float32).tables
    assert tables.sqrt_one_minus_alpha_bar[0].item() == pytest.approx(1e-3, rel=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_betas("quadratic", 10, 1e-4, 0.02), "choose one of"),
        (lambda: linear_betas(0, 1e-4, 0.02), "at least 1"),
        (lambda: linear_betas(10, 0.02, 1e-4), "beta_start <= beta_end"),
        (lambda: linear_betas(10, 0.0, 0.02), "0 < beta_start"),
    ],
)
def test_bad_schedules_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
