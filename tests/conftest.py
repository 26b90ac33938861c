import torch

# Small ops on 2 cores are fastest single-threaded (no OpenMP spin-waiting).
torch.set_num_threads(1)
