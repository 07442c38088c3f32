"""The ``anyxp`` command line."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

from anyxp.cli import ATOL, RTOL, main


def anyxp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyxp", *args], capture_output=True, text=True, timeout=120
    )


def test_list_json_names_every_builtin():
    out = anyxp("list", "--json")
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    backends = {b["name"]: b for b in table["backends"]}
    assert {"numpy", "array_api_strict", "torch", "jax", "dask", "cupy"} <= set(backends)
    assert {"mpi", "local"} <= {c["name"] for c in table["comms"]}
    for name in ("numpy", "array_api_strict", "torch", "jax", "dask"):
        assert backends[name]["available"], backends[name]["unavailable_reason"]
        assert backends[name]["distribution"] == "anyxp"
        assert "arrays" in backends[name]["capabilities"]
    cupy = backends["cupy"]
    assert cupy["available"] or cupy["unavailable_reason"]
    assert "ad.grad" in backends["torch"]["capabilities"]
    assert "ad.grad" not in backends["numpy"]["capabilities"]


def test_info_describes_a_backend():
    out = anyxp("info", "torch", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["name"] == "torch" and info["device"] == "cpu" and "torch" in info["namespace"]
    assert "jit" in info["missing_capabilities"]


def test_info_on_a_misspelt_name_suggests():
    out = anyxp("info", "nmupy")
    assert out.returncode == 2
    assert "Did you mean 'numpy'?" in out.stderr


# -- user errors: one line naming the fix, exit 2, never a traceback --------------------
@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["demo", "lorenx"], ["unknown problem 'lorenx'", "Did you mean 'lorenz'?"]),
        (["solve", "nope"], ["unknown problem 'nope'", "van_der_pol"]),
        (["solve", "lorenz", "--method", "rk5"], ["unknown method 'rk5'", "tsit5"]),
        (["solve", "lorenz", "--method", "rk4"], ["fixed step", "--dt"]),
        (["solve", "lorenz", "--rtol", "-1"], ["rtol"]),
        (["solve", "lorenz", "--dtype", "int32"], ["int32", "float64"]),
        (["solve", "lorenz", "--backend", "nmupy"], ["Did you mean 'numpy'?"]),
    ],
)
def test_a_user_error_is_one_line_and_exit_status_2(argv, names, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("anyxp: error: ")
    for name in names:
        assert name in line
    assert captured.out == ""


def test_a_user_error_in_a_process_shows_no_traceback():
    out = anyxp("demo", "lorenx")
    assert out.returncode == 2
    assert out.stderr.startswith("anyxp: error: unknown problem 'lorenx'")
    assert "Traceback" not in out.stderr


def test_rk4_with_dt_and_t_end(capsys):
    assert (
        main(["solve", "lorenz", "--method", "rk4", "--dt", "1e-2", "--t-end", "1", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "rk4" and result["dt"] == 1e-2 and result["status"] == 0
    assert result["t_span"] == [0.0, 1.0]
    assert result["stats"]["steps"] == 100
    # The published reference is at the problem's own end time, not at 1.
    assert "relative_error_vs_reference" not in result


def test_solve_reports_its_tolerances_and_the_reference_error(capsys):
    assert main(["solve", "arenstorf", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["rtol"], result["atol"]) == (RTOL, ATOL) == (1e-8, 1e-10)
    assert result["relative_error_vs_reference"] < 1e-4


def test_help_states_the_default_tolerances_and_why(capsys):
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default 1e-08" in text and "default 1e-10" in text
    assert "anyxp.ode.solve's 1e-6 and 1e-9" in text
    assert "--dt" in text and "--t-end" in text


def test_version_is_the_installed_distribution(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"anyxp {importlib.metadata.version('anyxp')}"


def test_a_compiling_backend_reports_compilation_and_a_warm_run_apart():
    out = anyxp("solve", "lorenz", "--backend", "jax", "--t-end", "1", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["compiled"] is True
    assert result["seconds"] > 0 and result["seconds_warm"] > 0
    assert list(result["stats"])[:3] == ["nfev", "njev", "nlu"]
    text = anyxp("solve", "lorenz", "--backend", "jax", "--t-end", "1")
    assert "compilation included" in text.stdout and "warm" in text.stdout


def test_an_eager_backend_reports_one_time(capsys):
    assert main(["solve", "lorenz", "--t-end", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["compiled"] is False and result["seconds_warm"] is None


def test_a_closed_pipe_ends_quietly():
    # `anyxp list --json | head -1`: the reader goes away before anyxp writes.
    proc = subprocess.Popen(
        [sys.executable, "-m", "anyxp", "list", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert stderr == ""
