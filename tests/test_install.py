"""Install smoke: the package imports with its declared dependencies, every CLI answers --help."""
import importlib.metadata
import importlib.util
import re
import subprocess
import sys

import pytest

import litemono
from conftest import ROOT

SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))
TOP_LEVEL = ["train.py", "evaluate_depth.py", "precompute_teacher.py"]


def test_package_metadata_and_public_entry_point():
    assert importlib.metadata.version("litemono") == litemono.__version__
    requires = " ".join(importlib.metadata.requires("litemono"))
    for dependency in ("torch", "torchvision", "timm", "numpy", "pillow", "scikit-image",
                       "tensorboard", "tqdm", "transformers", "pyyaml"):
        assert dependency in requires
    assert callable(litemono.load_depth_network) and callable(litemono.build_depth_network)
    with pytest.raises(AttributeError):
        litemono.not_a_thing  # noqa: B018


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_cli_help(name):
    out = subprocess.run([sys.executable, str(ROOT / name), "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_build_their_parser(script, capsys):
    """Each script imports cleanly and its ``main`` answers --help (in-process: fast)."""
    spec = importlib.util.spec_from_file_location(f"script_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    assert re.match(r"usage: ", capsys.readouterr().out)


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(?!#)(\S.*)$", readme.split("```bash", 1)[1].split("```", 1)[0], re.M)
    assert commands[0] == 'pip install -e ".[test]" && python scripts/demo.py'
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()
