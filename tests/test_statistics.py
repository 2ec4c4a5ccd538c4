"""Reference tests: samplers recover the moments of a known Gaussian.

Target N(mean=(1, -2), variance=(0.5, 2)); 4000 independent chains from x = 0, final
states only. Standard errors: mean <= sqrt(2 / 4000) = 0.022, variance ~ 2.2% relative.
Tolerances: mean within 0.08 (about 3.5 standard errors), variance within 8% relative
(unadjusted Langevin at step 0.005 adds a bias of at most 0.5%).
"""

from __future__ import annotations

import pytest
import torch

from ebmlib.samplers import HMC, MALA, Langevin
from tests.energies import gaussian_2d

CASES = {
    "langevin": (lambda: Langevin(step_size=0.005), 2000),
    "mala": (lambda: MALA(step_size=0.4), 400),
    "hmc": (lambda: HMC(step_size=0.3, n_leapfrog=5), 150),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_recovers_gaussian_moments(name):
    make, n_steps = CASES[name]
    model = gaussian_2d().double()
    x = make().sample(model, torch.zeros(4000, 2, dtype=torch.float64), n_steps=n_steps,
                      generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0), torch.tensor([1.0, -2.0], dtype=torch.float64), atol=0.08, rtol=0)
    torch.testing.assert_close(x.var(0), torch.tensor([0.5, 2.0], dtype=torch.float64), rtol=0.08, atol=0)


def test_mala_is_exact_where_langevin_is_biased():
    # With a large step, unadjusted Langevin's stationary variance is s^2 / (1 - step / (2 s^2)):
    # 0.5 / (1 - 0.2 / 1) = 0.625 for the first coordinate; MALA's accept/reject removes the bias.
    model = gaussian_2d().double()
    x0 = torch.zeros(4000, 2, dtype=torch.float64)
    ula = Langevin(step_size=0.2).sample(model, x0, n_steps=300, generator=torch.Generator().manual_seed(0))
    mala = MALA(step_size=0.2).sample(model, x0, n_steps=300, generator=torch.Generator().manual_seed(0))
    assert float(ula.var(0)[0]) == pytest.approx(0.625, rel=0.08)
    assert float(mala.var(0)[0]) == pytest.approx(0.5, rel=0.08)
