"""Test-session settings."""

import torch

# The tests run many tiny tensor ops; one intra-op thread avoids OpenMP spin-waiting,
# which makes such ops tens of times slower when the machine's two cores are busy.
torch.set_num_threads(1)
