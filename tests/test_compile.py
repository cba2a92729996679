"""The training step's model and criterion each compile as one graph, for every KITTI row.

``compile_step`` compiles with ``fullgraph=True``, so a graph break anywhere in the networks,
the geometry or the losses raises (naming the line). The tests use dynamo's ``eager`` backend:
the step is traced exactly as for inductor, but no kernels are generated, so a row costs a few
seconds; the traced graph's numbers are compared with the eager step's.
"""
import pytest
import torch

from litemono import engine
from litemono.compile import COMPILE_MODES, compile_step
from litemono.config import PROJECT_ROOT, parse_config
from litemono.losses.criterion import build_criterion
from litemono.config import FIELDS
from litemono.model import build_model

from conftest import no_host_reads

ROWS = sorted((PROJECT_ROOT / "configs" / "kitti").glob("0*.yaml"))
HEIGHT, WIDTH, BATCH = 64, 192, 2


def _intrinsics(height, width):
    K = torch.eye(4)
    K[0, 0], K[0, 2] = 0.58 * width, 0.5 * width  # KITTI's normalised intrinsics
    K[1, 1], K[1, 2] = 1.92 * height, 0.5 * height
    return K.expand(BATCH, 4, 4).clone()


def _inputs(cfg):
    """A training batch as the loader gives it: colour pyramids, augmented scale 0, K, teacher."""
    gen = torch.Generator().manual_seed(0)
    inputs = {}
    for scale in range(4):
        height, width = HEIGHT >> scale, WIDTH >> scale
        for frame in cfg.data.frame_ids:
            inputs[("color", frame, scale)] = torch.rand(BATCH, 3, height, width, generator=gen)
        inputs[("K", scale)] = _intrinsics(height, width)
        inputs[("inv_K", scale)] = torch.linalg.inv(inputs[("K", scale)])
    for frame in cfg.data.frame_ids:
        inputs[("color_aug", frame, 0)] = inputs[("color", frame, 0)].clone()
    teacher = torch.rand(BATCH, 1, HEIGHT, WIDTH, generator=gen) + 0.1
    teacher[0, :, :HEIGHT // 4] = 0.0  # sky in one image
    teacher[1] = 0.0  # and an image without any valid teacher pixel
    inputs["teacher_disp"] = teacher
    return inputs


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=lambda p: p.stem)
def test_kitti_row_step_compiles_into_one_graph(row):
    cfg = parse_config(["--config", str(row), "--height", str(HEIGHT), "--width", str(WIDTH),
                        "--mypretrain", "none", "--weights_init", "scratch"])
    torch.manual_seed(0)
    model, criterion, inputs = build_model(cfg), build_criterion(cfg), _inputs(cfg)

    torch._dynamo.reset()
    # as the engine compiles them: the model, then the criterion (fullgraph: a break raises)
    compiled_model = compile_step(model, "default", backend="eager")
    compiled_criterion = compile_step(criterion, "default", backend="eager", new_step=False)
    torch.manual_seed(1)  # the same drop-path and tie-breaking noise draws in both runs
    total, terms = compiled_criterion(inputs, compiled_model(inputs))
    torch.manual_seed(1)
    want_total, want_terms = criterion(inputs, model(inputs))
    torch.testing.assert_close(total, want_total)
    assert terms.keys() == want_terms.keys()
    for name in terms:
        torch.testing.assert_close(terms[name], want_terms[name], msg=name)
    assert torch.isfinite(total)
    if cfg.loss.chamfer_weight > 0 or cfg.loss.distill_weight > 0:  # the static-shape losses
        assert {"distill", "chamfer"} & terms.keys()


def test_compile_step_refuses_a_graph_break():
    def step(x):
        if x.sum() > 0:  # data-dependent branch: the step would wait for the host
            return x * 2
        return x

    torch._dynamo.reset()
    with pytest.raises(torch._dynamo.exc.Unsupported, match="[Dd]ata-dependent"):
        compile_step(step, "default", backend="eager")(torch.ones(3))


def test_compile_mode_option_and_compile_step_accept_the_same_modes(capsys):
    choices = FIELDS["compile_mode"][1].metadata["choices"]
    assert "reduce-overhead" in choices and list(choices) == list(COMPILE_MODES)
    for mode in choices:  # every value the option accepts, compile_step accepts
        cfg = parse_config(["--compile_mode", mode])
        torch._dynamo.reset()
        assert compile_step(lambda x: x + 1, cfg.train.compile_mode, backend="eager")(
            torch.ones(2)).tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="--compile_mode must be one of default, reduce-overhead"):
        compile_step(lambda x: x, "fast")
    with pytest.raises(SystemExit):
        parse_config(["--compile_mode", "fast"])
    assert "--compile_mode" in capsys.readouterr().err


@pytest.mark.parametrize("mode,marks", [("default", 0), ("reduce-overhead", 2),
                                        ("max-autotune", 2)])
def test_cuda_graph_modes_start_a_new_step_per_call(mode, marks, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append(1))

    def step(x, weight):
        return (x * weight).sum()

    torch._dynamo.reset()
    compiled = compile_step(step, mode, backend="eager")
    weight = torch.tensor(3.0, requires_grad=True)
    for _ in range(2):
        value = compiled(torch.ones(4), weight)
        value.backward()
    assert value.item() == 12.0 and weight.grad.item() == 8.0  # two steps' gradients
    assert len(calls) == marks


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_reduce_overhead_step_matches_eager_on_cuda():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 1, 3, padding=1)).cuda()

    def step(x):
        return (net(x) - x.mean(1, keepdim=True)).abs().mean()

    x = torch.rand(2, 3, 32, 32, device="cuda")
    compiled = compile_step(step, "reduce-overhead")
    for _ in range(3):  # warm-up, record, replay
        value = compiled(x)
        value.backward()
        got = [p.grad.clone() for p in net.parameters()]
        net.zero_grad(set_to_none=True)
    want = step(x)
    want.backward()
    torch.testing.assert_close(value, want)
    for g, p in zip(got, net.parameters()):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.slow
def test_compile_flag_compiles_the_model_and_the_criterion(tmp_path, monkeypatch):
    # train.py --compile compiles the model and the criterion with --compile_mode (the eager
    # backend keeps the test fast); the run's losses equal an uncompiled run's
    from test_train import tiny_config, use_tiny_scene

    compiled = []

    def eager_compile(fn, mode, backend, new_step=True):
        compiled.append((type(fn).__name__, mode, new_step))
        return compile_step(fn, mode, backend="eager", new_step=new_step)

    monkeypatch.setattr(engine, "compile_step", eager_compile)
    use_tiny_scene(monkeypatch, train_size=2, val_size=1)
    losses = []
    for flag in (False, True):
        torch._dynamo.reset()
        cfg = tiny_config(tmp_path, f"compile_{flag}", num_steps=2, compile=flag,
                          compile_mode="max-autotune")
        losses.append(engine.train(cfg).losses)
    assert compiled == [("DepthPoseModel", "max-autotune", True),
                        ("Criterion", "max-autotune", False)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5) and len(losses[0]) == 2


@pytest.mark.parametrize("row", ROWS, ids=lambda p: p.stem)
def test_kitti_row_step_never_reads_a_tensor_on_the_host(row, monkeypatch):
    # every row's whole step (forward, distillation / Chamfer terms, backward, AdamW) is queued
    # without a host read, so a GPU never waits for the host inside a step
    cfg = parse_config(["--config", str(row), "--height", str(HEIGHT), "--width", str(WIDTH),
                        "--mypretrain", "none", "--weights_init", "scratch"])
    torch.manual_seed(0)
    built = engine.build_training(cfg, torch.device("cpu"), 1)
    criterion, inputs = build_criterion(cfg), _inputs(cfg)
    with no_host_reads(monkeypatch):
        total, _, _ = engine.train_step(built, built.model, criterion, inputs, 1)
    assert torch.isfinite(total)
