"""python -m paskdnn as a new user meets it: --version, help, argument errors in the
parent (argparse, exit 2), the CPU's float32-only refusal, and the files the main job
writes (coldstart.md, the trace, the GPU result shown beside a CPU run)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import paskdnn
from paskdnn import coldstart

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "paskdnn", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def test_version():
    r = cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"paskdnn {paskdnn.__version__}"


def test_bare_invocation_prints_help_and_runs_nothing():
    r = cli()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: python -m paskdnn")
    for command in ("coldstart", "demo", "config"):
        assert command in r.stdout
    assert "demo OK" not in r.stdout and "paskdnn 0" not in r.stdout and "stats:" not in r.stdout


@pytest.mark.parametrize("args", [(), ("coldstart",), ("demo",), ("config",)])
def test_help_has_no_rst_backticks(args):
    r = cli(*args, "--help")
    assert r.returncode == 0
    assert "``" not in r.stdout and "`" not in r.stdout


def test_coldstart_help_explains_every_option_and_its_default():
    out = cli("coldstart", "--help").stdout
    options = re.findall(r"^  (--[a-z-]+)", out, re.M)
    assert set(options) >= {"--model", "--device", "--policies", "--repeats", "--layout", "--dtype", "--batch",
                            "--steady", "--out", "--timeout"}
    text = " ".join(out.split())
    for opt in ("--model", "--policies", "--repeats", "--layout", "--batch", "--steady", "--out", "--timeout"):
        after = text.split(f" {opt} ", 1)[1]
        help_text = re.split(r" --[a-z]", after, 1)[0]
        assert "default:" in help_text, (opt, help_text)
    assert "(default: reactive,proactive,reuse,pask)" in text
    assert "(default: coldstart-results)" in text


def test_demo_unknown_argument_shows_the_demo_usage():
    r = cli("demo", "--bogus")
    assert r.returncode == 2
    assert r.stderr.startswith("usage: python -m paskdnn demo")
    assert "unrecognized arguments: --bogus" in r.stderr


@pytest.mark.parametrize("args, message", [
    (("--repeats", "0"), "argument --repeats: must be >= 1, got 0"),
    (("--repeats", "-1"), "argument --repeats: must be >= 1, got -1"),
    (("--repeats", "two"), "argument --repeats: invalid int value: 'two'"),
    (("--layout", "XYZ"), "argument --layout: invalid choice: 'XYZ'"),
    (("--batch", "0"), "argument --batch: must be >= 1, got 0"),
    (("--steady", "0"), "argument --steady: must be >= 1, got 0"),
    (("--model", "resnet51"), "argument --model: 'resnet51' is neither a zoo model (resnet18, "),
    (("--model", "missing.onnx"), "argument --model: missing.onnx: no such file"),
    (("--policies", "pask,eager"), "argument --policies: unknown policy 'eager'"),
    (("--device", "gpu"), "argument --device: 'gpu' is not a device"),
    (("--dtype", "float64"), "argument --dtype: invalid choice: 'float64'"),
])
def test_coldstart_arguments_are_checked_in_the_parent(tmp_path, args, message):
    r = cli("coldstart", *args, "--out", str(tmp_path / "out"), timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("usage: python -m paskdnn coldstart")
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()  # refused before any work


def test_coldstart_refuses_float16_on_the_cpu(tmp_path):
    for dtype in ("float16", "bfloat16"):
        r = cli("coldstart", "--dtype", dtype, "--device", "cpu", "--out", str(tmp_path / "out"))
        assert r.returncode == 2
        assert f"--dtype {dtype} --device cpu: the CPU backend is float32-only" in r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.skipif(paskdnn.device_count("cuda") > 0, reason="this machine has a CUDA GPU")
def test_coldstart_cuda_without_a_gpu_is_one_line(tmp_path):
    r = cli("coldstart", "--device", "cuda", "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["python -m paskdnn coldstart: error: --device cuda: no CUDA GPU found on this machine "
                     "(leave --device out, or pass --device cpu, to run on the CPU)"]


def test_coldstart_quick_cpu_run_writes_its_files(tmp_path):
    """The smallest run the command allows (two policies, one process each, one steady run)."""
    out = tmp_path / "cs"
    r = cli("coldstart", "--model", "resnet18", "--device", "cpu", "--policies", "reactive,pask", "--repeats", "1",
            "--steady", "1", "--out", str(out), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    md = (out / "coldstart.md").read_text()
    doc = json.loads((out / "coldstart.json").read_text())
    assert doc["device"] == "cpu" and doc["dtype"] == "float32"
    # the table, what a load costs here (measured), and the GPU result beside it
    assert re.search(r"A kernel load on cpu costs \d+\.\d\d ms here \(measured in this run", md)
    assert doc["load_costs"]["ms_per_load"] > 0
    assert "waited" in md and "reactive" in md and "pask" in md
    ref = doc["gpu_reference"]
    assert ref["card"] in md and ref["date"] in md and ref["command"] in md
    assert ref["command"] == "python3 -m paskdnn coldstart --model resnet18 --device cuda --repeats 2"
    assert "265.80x" in md  # resnet18 pask cold vs reactive on the H100
    wrote = r.stdout.strip().splitlines()[-1]
    for name in ("coldstart.md", "coldstart.json", "trace-pask-cold.json"):
        assert str(out / name) in wrote
        assert (out / name).exists()
    if (out / "coldstart.png").exists():  # matplotlib installed
        assert str(out / "coldstart.png") in wrote and str(out / "timeline.png") in wrote
    assert "python -m paskdnn coldstart --model resnet18" in doc["command"]


def _table(md: str, heading: str):
    lines = md.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("## ") and heading in line)
    j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
    return lines[i], [line for line in lines[i:j] if re.match(r"\| \w+ \| \w+ \| (cold|warm) \|", line)]


def test_gpu_reference_shipped_with_the_package_is_the_table_in_bench_results():
    path = ROOT / "bench" / "results" / "coldstart.md"
    if not path.exists():
        pytest.skip("no bench/results/ (not a checkout)")
    ref = json.loads((Path(coldstart.__file__).with_name("coldstart_reference.json")).read_text())
    heading, rows = _table(path.read_text(), ref["source"].split(", ")[-1])
    assert ref["card"] in heading and ref["date"] in heading and f"{ref['dtype']} {ref['layout']}" in heading
    assert f"--repeats {ref['repeats']}" in path.read_text()
    got = []
    for model, mrows in ref["models"].items():
        for r in mrows:
            got.append(f"| {model} | {r['policy']} | {r['cache']} | {r['first_from_start_ms']:.1f} | "
                       f"{r['first_from_ready_ms']:.1f} | {r['steady_ms']:.2f} | {r['first_over_steady']:.2f}x | "
                       f"{r['speedup_vs_reactive']:.2f}x | {r['blocking_loads']} | {r['reuses']} | "
                       f"{r['compiles']} |")
    assert sorted(got) == sorted(rows)


def test_coldstart_table_shows_the_captured_steady_state_only_where_measured():
    from paskdnn import coldstart

    row = dict(policy="pask", cache="cold", first_from_start_ms=900.0, first_from_ready_ms=2.0, steady_ms=1.6,
               first_over_steady=1.25, speedup_vs_reactive=None, blocking_loads=0, reuses=3, compiles=0)
    cpu = coldstart.table_lines([dict(row, steady_captured_ms=None)])
    assert "captured" not in cpu[0] and len(cpu) == 2
    gpu = coldstart.table_lines([dict(row, steady_captured_ms=0.5), dict(row, cache="warm", steady_captured_ms=None)])
    assert "first/captured" in gpu[0]
    assert "0.50 ms" in gpu[1] and "4.00x" in gpu[1]  # 2.0 ms first against 0.5 ms replays
    assert gpu[2].split()[9:11] == ["-", "-"]
    assert coldstart._median_present([None, 3.0, 1.0, None]) == 2.0 and coldstart._median_present([None]) is None
