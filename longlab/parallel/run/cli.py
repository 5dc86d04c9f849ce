"""Run a sequence-parallel method for real and print time and bytes per rank beside the model.

Two ways in, one set of options (see `add_arguments`):
- locally: `longlab parallel --method ring --world 4 --seq 4096` starts `--world` gloo processes (`launch`);
- on a cluster: `torchrun --nnodes 2 --nproc-per-node 8 ... -m longlab.parallel.run --method ring ...`:
  each process is one rank (nccl on GPUs, gloo otherwise), inputs are random per rank (seeded), and rank 0
  prints the table. Detected from the RANK/WORLD_SIZE variables torchrun sets.
Methods and their options come from the registry (`longlab.parallel.methods`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from .. import cost, sharding
from ..calibrate import DEFAULT_FILE, calibrate, load_alpha_beta
from ..methods import METHODS, get_method


def add_arguments(parser: argparse.ArgumentParser) -> None:
    longnet = get_method("longnet").options
    summaries = "; ".join(f"{name}: {get_method(name).summary}" for name in METHODS)
    parser.add_argument("--method", choices=METHODS, default="ring", help=f"algorithm (default ring). {summaries}")
    parser.add_argument("--world", type=int, default=2, help="ranks to start locally (ignored under torchrun)")
    parser.add_argument("--seq", type=int, default=4096, help="sequence length N (default 4096)")
    parser.add_argument("--heads", type=int, default=8, help="query heads H (default 8)")
    parser.add_argument("--kv-heads", type=int, default=None, help="k/v heads (grouped-query; default H)")
    parser.add_argument("--head-dim", type=int, default=64, help="head dim D (default 64)")
    parser.add_argument("--batch", type=int, default=1, help="batch size B (default 1)")
    parser.add_argument("--causal", action="store_true", help="causal attention")
    parser.add_argument("--backward", action="store_true", help="also run the backward pass")
    parser.add_argument("--no-overlap", action="store_true",
                        help="ring/zigzag: wait for each k/v transfer before computing (to measure the overlap)")
    parser.add_argument("--segments", type=int, nargs="+", default=None,
                        help=f"longnet segment lengths (default {list(longnet['segment_lengths'])})")
    parser.add_argument("--rates", type=int, nargs="+", default=None,
                        help=f"longnet dilation rates (default {list(longnet['dilation_rates'])})")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a hung run is stopped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate", action="store_true",
                        help="measure gloo alpha/beta on this machine and save them to --calibration")
    parser.add_argument("--calibration", default=str(DEFAULT_FILE),
                        help=f"alpha/beta JSON, read or (with --calibrate) written (default ./{DEFAULT_FILE})")


def _options(args) -> dict:
    """The flags given, as options of the chosen method (flags it does not take are ignored)."""
    given = {
        "overlap": False if args.no_overlap else None,
        "segment_lengths": tuple(args.segments) if args.segments else None,
        "dilation_rates": tuple(args.rates) if args.rates else None,
    }
    accepted = get_method(args.method).options
    return {name: value for name, value in given.items() if name in accepted and value is not None}


def _workload(args) -> cost.Workload:
    opts = _options(args)
    return cost.Workload(args.seq, args.heads, args.head_dim, args.kv_heads, batch=args.batch, elem_size=4,
                         opts=opts)


def format_rows(args, world, sent, received, times, model) -> str:
    modelled = cost.comm_time(args.method, world, _workload(args), model)
    formula = cost.bytes_per_rank(args.method, world, _workload(args))
    lines = [
        f"{args.method} on {world} ranks: N={args.seq} H={args.heads} D={args.head_dim} B={args.batch} "
        f"causal={args.causal}; alpha={model.alpha:.3g} s, beta={model.beta:.3g} s/B",
        f"{'rank':>4} {'sent (B)':>12} {'formula (B)':>12} {'received (B)':>12} {'measured (s)':>13} "
        f"{'model comm (s)':>15}",
    ]
    for r in range(world):
        lines.append(f"{r:>4} {sent[r]:>12,} {formula[r]:>12,} {received[r]:>12,} {times[r]:>13.4f} {modelled:>15.4f}")
    lines.append("model comm = alpha-beta time of the forward collectives alone (no compute, no overlap)")
    return "\n".join(lines)


def run_local(args) -> int:
    from .launch import launch

    gen = torch.Generator().manual_seed(args.seed)
    hk = args.kv_heads or args.heads
    shape = (args.batch, args.heads, args.seq, args.head_dim)
    q = torch.randn(shape, generator=gen)
    k, v = (torch.randn(args.batch, hk, args.seq, args.head_dim, generator=gen) for _ in range(2))
    if args.backward:
        q, k, v = (t.requires_grad_() for t in (q, k, v))
    model = load_alpha_beta(args.calibration)
    out, trace = launch(args.method, q, k, v, args.world, causal=args.causal, timeout=args.timeout,
                        alpha=model.alpha, beta=model.beta, **_options(args))
    if args.backward:
        out.backward(torch.ones_like(out))
    print(format_rows(args, args.world, trace.sent("forward"), trace.received("forward"), trace.rank_times, model))
    if args.backward:
        print(f"backward (recomputes the forward, then backward): {trace.backward_time:.4f} s; "
              f"bytes sent per rank {trace.sent('backward')}")
    return 0


def run_torchrun(args) -> int:
    """One rank of a torchrun job (env:// rendezvous). Rank 0 prints the table."""
    import torch.distributed as dist

    from ..comm.torch_group import TorchGroup
    from .frontend import RankProgram

    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    group = TorchGroup()
    world, rank = group.world_size, group.rank
    spec = get_method(args.method)
    opts = spec.validate(args.heads, args.seq, world, _options(args))
    n_local = sharding.local_length(spec.sharding, args.seq, world, rank)
    gen = torch.Generator().manual_seed(args.seed * 100_003 + rank)
    hk = args.kv_heads or args.heads
    q = torch.randn(args.batch, args.heads, n_local, args.head_dim, generator=gen).to(device)
    k, v = (torch.randn(args.batch, hk, n_local, args.head_dim, generator=gen).to(device) for _ in range(2))
    program = RankProgram(args.method, args.causal, None, args.seq, opts)
    with torch.set_grad_enabled(args.backward):
        leaves = [t.requires_grad_(args.backward) for t in (q, k, v)]
        group.barrier()
        if use_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = program(group, *leaves)
        if args.backward:
            out.backward(torch.ones_like(out))
        if use_cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    # Each rank recorded its own sends; sum the receivers' side over ranks, gather the senders' side.
    received = torch.tensor(group.trace.received("forward"), dtype=torch.float64, device=device)
    dist.all_reduce(received)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, (group.trace.sent("forward")[rank], elapsed))
    if rank == 0:
        model = load_alpha_beta(args.calibration)
        print(format_rows(args, world, [g[0] for g in gathered], [int(x) for x in received.tolist()],
                          [g[1] for g in gathered], model))
        if args.backward:
            print("measured = forward + backward")
    dist.destroy_process_group()
    return 0


def main(args) -> int:
    if args.calibrate:
        result = calibrate(path=args.calibration)
        print(f"gloo on this machine: alpha = {result['alpha_s']:.3g} s per message, "
              f"beta = {result['beta_s_per_byte']:.3g} s/byte ({result['bandwidth_GB_s']:.3g} GB/s); "
              f"saved to {args.calibration}")
        return 0
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return run_torchrun(args)
    return run_local(args)


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longlab.parallel.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
