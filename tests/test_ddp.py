"""DistributedDataParallel on the CPU: two gloo processes train in lock step."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from litemono import checkpoint as ckpt
from litemono import engine
from test_train import tiny_config, use_tiny_scene

WORLD = 2


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank, tmp_path, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    monkeypatch = pytest.MonkeyPatch()
    use_tiny_scene(monkeypatch, train_size=4, val_size=2)  # 2 samples per rank: 1 step
    built = []
    real_build = engine.build_training
    monkeypatch.setattr(engine, "build_training", lambda *a: built.append(real_build(*a)) or built[0])
    initial = {k: v.clone() for k, v in real_build(tiny_config(tmp_path), torch.device("cpu"), 1)
               .depth.state_dict().items()}
    result = engine.train(tiny_config(tmp_path, "ddp", num_steps=1))
    parts = built[0]
    torch.save({"depth": parts.depth.state_dict(), "pose": parts.pose.state_dict(),
                "initial": initial, "step": result.step, "losses": result.losses},
               tmp_path / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    mp.spawn(_rank_main, args=(tmp_path, _free_port()), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert ranks[0]["step"] == ranks[1]["step"] == 1
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank saw its own shard
    for net in ("depth", "pose"):
        for key, value in ranks[0][net].items():
            assert torch.equal(value, ranks[1][net][key]), f"{net}.{key} differs between ranks"
    moved = [k for k, v in ranks[0]["depth"].items()
             if v.is_floating_point() and not torch.equal(v, ranks[0]["initial"][k])]
    assert moved, "training did not change the depth network"
    # rank 0 alone wrote the run folder
    saved = ckpt.load_training_state(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert all(torch.equal(v, ranks[0]["depth"][k]) for k, v in saved["models"]["depth"].items())
    assert len(list((tmp_path / "ddp" / "train").iterdir())) == 1
