"""Training on several processes (``torchrun``): DistributedDataParallel or FSDP2.

``ddp`` keeps a whole copy of the model on every process and averages the gradients;
``fsdp`` shards every parameter, gradient and optimizer state over the processes with
PyTorch's ``fully_shard`` (FSDP2), for a model that does not fit one device. Either way
each process takes its rows of the same global batch, so N processes reach the weights
one process reaches, up to the order of float sums.

FSDP2 is applied per transformer block and then to the whole model. The blocks are the
classes a Hugging Face model names in ``_no_split_modules`` (transformers' own list of
the modules that must stay whole on one device). ``fully_shard`` keeps the module tree
and every module's name, and the myopic modes are switched through the model's config
(transformers' ``AttentionInterface``) and forward hooks on the projections, so
``myopic(model, mode)`` works on the sharded model as on the plain one.

Checkpoints hold the full (unsharded) weights and optimizer state in the format a single
process writes, gathered with ``torch.distributed.checkpoint.state_dict``: a run can be
continued with any of single-process, ``ddp`` or ``fsdp``.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from myopia.errors import MyopiaError
from myopia.training.config import PARALLEL

# Every process joins in gathering the full tensors (a collective); rank 0 keeps them, on
# the CPU, and the others get empty dicts.
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def join_process_group() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def blocks(model: nn.Module) -> list[nn.Module]:
    """The model's transformer blocks: the modules whose classes it names in
    ``_no_split_modules``; a model without such a list cannot be sharded by block."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    found = [m for m in model.modules() if type(m).__name__ in names]
    if not found:
        raise MyopiaError(
            f"{type(model).__name__} names no transformer block in _no_split_modules, so "
            "--parallel fsdp cannot shard it by block: use --parallel ddp"
        )
    return found


def wrap(model: nn.Module, parallel: str, world: int, device: torch.device, unused: bool):
    """The module to compute the loss through: ``model`` itself on one process, else
    wrapped for ``parallel``. ``unused``: some parameters get no gradient (bigram mode).

    ``fsdp`` shards ``model`` in place (``fully_shard`` moves each block to ``device``
    before sharding it, so no process ever holds more than one whole block there);
    ``ddp`` expects ``model`` on ``device`` already."""
    if parallel not in PARALLEL:
        raise MyopiaError(f"unknown parallel {parallel!r}: choose one of {', '.join(PARALLEL)}")
    if world == 1:
        return model
    if parallel == "ddp":
        return DistributedDataParallel(model, find_unused_parameters=unused)
    mesh = init_device_mesh(device.type, (world,))
    for block in blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model``'s parameters are sharded over processes (FSDP2): then gathering
    its state and running it forward are collectives every process must join."""
    return isinstance(model, FSDPModule)


def all_finite(model: nn.Module) -> bool:
    """Whether every weight is a finite number; under FSDP each process checks its own
    shards and the answer is agreed by all (a collective), so all stop or none."""
    sharded = is_sharded(model)
    # A sharded parameter is a DTensor; the root's may be whole after a forward pass
    # without backward (evaluation), which FSDP2 does not reshard.
    local = all(
        torch.isfinite(p.to_local() if isinstance(p, DTensor) else p).all().item()
        for p in model.parameters()
    )
    if not sharded:
        return local
    flag = torch.tensor(float(local), device=next(model.parameters()).device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _positional(optimizer_state: dict, names: list[str]) -> dict:
    # FQN keys (what torch's full optimizer state dict uses) -> the positions in the
    # optimizer's parameter list (what ``optimizer.state_dict()`` of one process uses).
    index = {name: i for i, name in enumerate(names)}
    return {
        "state": {index[name]: value for name, value in optimizer_state["state"].items()},
        "param_groups": [
            {**group, "params": [index[name] for name in group["params"]]}
            for group in optimizer_state["param_groups"]
        ],
    }


def _by_name(optimizer_state: dict, names: list[str]) -> dict:
    return {
        "state": {names[i]: value for i, value in optimizer_state["state"].items()},
        "param_groups": [
            {**group, "params": [names[i] for i in group["params"]]}
            for group in optimizer_state["param_groups"]
        ],
    }


def _parameter_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The model's and optimizer's state dicts as one process would write them; under
    FSDP gathered from every shard (call it on every process; only rank 0 gets them)."""
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    weights = get_model_state_dict(model, options=_FULL)
    optimizer_state = get_optimizer_state_dict(model, optimizer, options=_FULL)
    if not optimizer_state:  # not rank 0
        return weights, optimizer_state
    return weights, _positional(optimizer_state, _parameter_names(model, optimizer))


def load_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict, optimizer_state: dict
) -> None:
    """Load what :func:`full_state` returned; under FSDP each process keeps its shards."""
    if not is_sharded(model):
        model.load_state_dict(weights)
        optimizer.load_state_dict(optimizer_state)
        return
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, weights, options=options)
    names = _parameter_names(model, optimizer)
    set_optimizer_state_dict(model, optimizer, _by_name(optimizer_state, names), options=options)
