r"""
Binary MNIST with Gibbs-with-gradients
======================================

An energy-based model of **binary** images, trained by persistent contrastive divergence with
negatives from :class:`~ebmlib.samplers.GibbsWithGradients`, a sampler of discrete data:

- data: MNIST-10k's 8,000 training digits (shipped with ebmlib), each pixel set to 1 where its
  intensity is above one half and to 0 elsewhere: 784 bits per image;
- energy: the free energy of a restricted Boltzmann machine with 200 hidden units,
  :math:`E(v) = -a^\top v - \sum_j \operatorname{softplus}(w_j^\top v + c_j)`, the energy of
  :math:`p(v) = \sum_h p(v, h)` with its binary hidden units summed out;
- training: the library's :class:`~ebmlib.recipes.EBM` recipe and :class:`~ebmlib.training.Trainer`;
  a :class:`~ebmlib.buffers.ReplayBuffer` of 1,000 persistent chains, which start as independent
  pixels with the data's mean intensities; every step continues 100 of them by 20 Gibbs-with-gradients
  steps (each changes at most one pixel, picked with the gradient of the energy) and lowers
  :math:`\operatorname{mean} E(\text{data}) - \operatorname{mean} E(\text{chains})`
  (:class:`~ebmlib.losses.ContrastiveDivergence`).
"""

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from ebmlib.buffers import Initializer, ReplayBuffer
from ebmlib.data import default_root, load_dataset
from ebmlib.evaluation import image_grid
from ebmlib.models import EnergyModel
from ebmlib.recipes import EBM
from ebmlib.samplers import GibbsWithGradients
from ebmlib.training import Trainer

images, _ = load_dataset("mnist", default_root("mnist"), train=True)  # (8000, 1, 28, 28), pixels in [-1, 1]
data = (images > 0).float().flatten(1)  # intensity above 1/2: pixels in {0, 1}, (8000, 784)
pixel_means = data.mean(0).clamp(0.01, 0.99)
print(f"{len(data)} binary digits; {float(data.mean()):.1%} of their pixels are 1")


# %%
# Two small parts the library does not have: where chains start (independent pixels with the
# data's means) and the RBM's free energy. Its visible biases start at the logits of those means,
# so before training the model *is* the independent-pixel law the chains start from.
class BernoulliInit(Initializer):
    """Independent bits, pixel ``i`` equal to 1 with probability ``probabilities[i]``."""

    def __init__(self, probabilities):
        super().__init__(tuple(probabilities.shape))
        self.register_buffer("probabilities", probabilities.clone())

    def forward(self, n, y=None, generator=None):
        return torch.bernoulli(self.probabilities.expand(n, *self.event_shape), generator=generator)


class RBMFreeEnergy(EnergyModel):
    """E(v) = -a.v - sum_j softplus(w_j.v + c_j): a restricted Boltzmann machine with its hidden units summed out."""

    def __init__(self, visible_bias, n_hidden):
        super().__init__()
        self.visible_bias = nn.Parameter(visible_bias.clone())
        self.hidden = nn.Linear(len(visible_bias), n_hidden)
        nn.init.normal_(self.hidden.weight, std=0.01)
        nn.init.zeros_(self.hidden.bias)

    def energy(self, v, y=None):
        return -v @ self.visible_bias - nn.functional.softplus(self.hidden(v)).sum(1)


torch.manual_seed(0)
model = RBMFreeEnergy(torch.logit(pixel_means), n_hidden=200)
sampler = GibbsWithGradients(n_steps=20)
buffer = ReplayBuffer(1000, BernoulliInit(pixel_means), reinit_prob=0.0, generator=torch.Generator().manual_seed(0))
recipe = EBM(model, sampler, buffer, torch.optim.Adam(model.parameters(), lr=3e-3))

# %%
# Training: 200 batches of 100 digits drawn at random, one epoch.
generator = torch.Generator().manual_seed(0)
loader = [data[torch.randint(len(data), (100,), generator=generator)] for _ in range(200)]
trainer = Trainer(recipe, device="cpu", seed=0, progress=False, refresh_every=50)
trainer.fit(loader, epochs=1)
for row in trainer.history:
    print(f"step {row['step']:4.0f}: mean energy of data {row['positive_energy']:7.1f}, "
          f"of chains {row['negative_energy']:7.1f}")

# %%
# Samples: 64 of the persistent chains, continued for 200 more steps. The acceptance rate of
# Gibbs-with-gradients' proposals, and the energies of the samples next to those of training digits:
chains, diagnostics = sampler.sample(model, buffer.samples[:64], n_steps=200,
                                     generator=torch.Generator().manual_seed(1), return_diagnostics=True)
with torch.no_grad():
    data_energy, chain_energy = model(data[:1000]).mean(), model(chains).mean()
print(f"acceptance rate {float(diagnostics['acceptance_rate'].mean()):.2f}; mean energy of training digits "
      f"{float(data_energy):.1f}, of the samples {float(chain_energy):.1f}")

figure, axes = plt.subplots(1, 2, figsize=(9, 4.8), layout="constrained")
for axis, (title, bits) in zip(axes, [("training digits", data[:64]), ("samples", chains)], strict=True):
    axis.imshow(image_grid(bits.view(-1, 1, 28, 28), nrow=8, value_range=(0, 1)).expand(-1, -1, 3).numpy())
    axis.set_title(title)
    axis.axis("off")
plt.show()

# %%
# What the figure shows: the samples are strokes of the digits' size in the digits'
# place, some of them recognisable 0s and 1s and a few 3-, 5- or 6-like shapes, sprinkled with
# isolated pixels that digits don't have; none would pass for a training digit. Their mean energy
# is far *below* the training digits' (about -145 against -75): after 200 steps the model has deep
# wells away from the data, which the continued chains fall into, and its energies still swing from
# one logged step to the next. A training step changes at most 20 of a chain's pixels (a digit
# lights about 100), and a chain is continued on one step in ten, so the chains trail the changing
# model; this short run is a demonstration of the parts, not a trained model. Almost every proposal
# is accepted (0.99): the free energy is close to linear in any one pixel, so the gradient's estimate
# of each flip's energy change is close to exact. The whole script takes about 35 s of CPU time on
# one thread.
