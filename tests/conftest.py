"""Shared test settings: deterministic, few threads (CI has 2 cores)."""

import torch

torch.manual_seed(0)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
