"""The address a run's Pointer Unit asks for after each given address (docs/chomsky.md,
"binary_addition").

    python docs/diagnostics/pointer_moves.py RUN ADDRESSES [--which latest]

RUN is a run or checkpoint folder of a PANM whose Pointer Unit computes each move from the
latest pointer alone (pointer_window >= 1 with pointer_inputs "latest", bitwise addresses).
For each address in ADDRESSES (comma-separated), and each Mode-1 pointer, prints the address
whose bits are the signs of the unit's query (what `PointerUnit._address_found` matches) and
the smallest |query| over the bits (how sure the least sure bit is, in (0, 1)). With soft
attention over the slots present, a request for an address that is not in memory lands on the
nearest slot that is, so a wrong request can pass unseen in short sequences.
"""

import argparse

import torch

from panm.checkpoint import load_checkpoint_model

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("addresses")
parser.add_argument("--which", default="best", choices=["best", "latest"])
args = parser.parse_args()
torch.set_num_threads(1)
memory = load_checkpoint_model(args.run, args.which).eval().memory
unit, bank, config = memory.pointer_unit, memory.address_bank, memory.config
if config.pointer_window < 1 or config.pointer_inputs != "latest":
    raise SystemExit("needs pointer_window >= 1 with pointer_inputs 'latest'")
every = bank.lookup(torch.arange(bank.size))  # (2**bits, bits) in {0, 1}
with torch.no_grad():
    for address in (int(a) for a in args.addresses.split(",")):
        pointer = bank.lookup(torch.full((1, config.num_mode1), address))  # (1, G, bits)
        inputs = [unit.cell.input_map(pointer.transpose(0, 1))] * unit.window
        query = unit.attention.queries(unit.cell.run(inputs, None)[-1])  # (G, 1, bits)
        cells = []
        for g in range(config.num_mode1):
            bits = (query[g, 0] > 0).float()
            asked = int((every == bits).all(dim=-1).nonzero()[0])
            cells.append(f"pointer {g}: {asked} (least sure bit {query[g, 0].abs().min():.2f})")
        print(f"{address} -> " + ", ".join(cells))
