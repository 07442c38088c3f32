"""Selection order, composition, caching and the errors users meet when choosing."""

from __future__ import annotations

import json
import textwrap
import threading

import numpy as np
import pytest

import anyxp

torch = pytest.importorskip("torch")


def test_explicit_name_beats_like_context_and_environment(monkeypatch):
    monkeypatch.setenv("ANYXP_BACKEND", "array_api_strict")
    with anyxp.use("dask"):
        assert anyxp.backend("torch", like=np.ones(2)).name == "torch"
        assert anyxp.backend(like=np.ones(2)).name == "numpy"
        assert anyxp.backend().name == "dask"
    assert anyxp.backend().name == "array_api_strict"
    monkeypatch.delenv("ANYXP_BACKEND")
    assert anyxp.backend().name == "numpy"


def test_like_infers_from_torch_tensor():
    be = anyxp.backend(like=torch.ones(2))
    assert be.name == "torch"
    assert be.float_dtype == torch.float32
    assert anyxp.backend(like=torch.ones(2, dtype=torch.float64)).float_dtype == torch.float64
    assert anyxp.backend(like=torch.ones(2)) is be  # cached


def test_like_ignores_python_scalars_and_reads_containers():
    assert anyxp.backend(like=[1.0, 2, None]).name == "numpy"
    assert anyxp.backend(like={"a": 1.0, "b": (torch.ones(1), 3)}).name == "torch"


def test_mixed_libraries_name_both():
    with pytest.raises(anyxp.MixedBackendsError, match=r"numpy.*torch|torch.*numpy"):
        anyxp.backend(like=(np.ones(2), torch.ones(2)))


def test_use_context_is_thread_local():
    seen = {}
    inside = threading.Event()
    release = threading.Event()

    def other_thread():
        inside.wait(timeout=30)
        seen["other"] = anyxp.backend().name
        release.set()

    t = threading.Thread(target=other_thread)
    t.start()
    with anyxp.use("torch"):
        inside.set()
        release.wait(timeout=30)
        seen["main"] = anyxp.backend().name
    t.join(timeout=30)
    assert seen == {"main": "torch", "other": "numpy"}


def test_composition_with_a_comm():
    be = anyxp.backend("torch+mpi")
    assert be.name == "torch" and be.comm.name == "mpi"
    assert anyxp.backend("torch", comm="mpi").comm.name == "mpi"
    assert "comm.allreduce" in be.capabilities
    assert anyxp.backend("torch").comm.name == "local"
    with pytest.raises(ValueError, match="names comm"):
        anyxp.backend("torch+mpi", comm="local")


def test_comm_that_cannot_carry_the_arrays():
    with pytest.raises(anyxp.PluginError, match="cannot carry 'dask'"):
        anyxp.backend("dask", comm="mpi")


def test_unknown_comm_suggests():
    with pytest.raises(anyxp.BackendNotFoundError, match="Did you mean 'mpi'"):
        anyxp.backend("numpy", comm="mip")


def test_backend_instance_passes_through():
    be = anyxp.backend("torch")
    assert anyxp.backend(be) is be
    with anyxp.use(be):
        assert anyxp.backend() is be


def test_asarray_moves_arrays_between_backends():
    t = anyxp.backend("torch", dtype="float64").asarray(np.array([1.0, 2.0], dtype=np.float32))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    n = anyxp.backend("numpy").asarray(torch.tensor([1.0, 2.0]))
    assert isinstance(n, np.ndarray) and n.dtype == np.float64
    assert anyxp.backend("numpy").asarray([1, 2]).dtype.kind == "i"  # integers stay integers


def test_bad_dtype_names_the_choices():
    with pytest.raises(ValueError, match="float32"):
        anyxp.backend("numpy", dtype="int32")


def test_jax_float64_really_is_float64():
    jnp = pytest.importorskip("jax.numpy")
    with pytest.warns(UserWarning, match="jax_enable_x64") if not _x64() else _nothing():
        be = anyxp.backend("jax", dtype="float64")
    assert be.asarray([0.1]).dtype == jnp.float64
    assert be.xp.zeros(2, dtype=be.float_dtype).dtype == jnp.float64
    assert be.random.normal(be.random.key(0), (2,)).dtype == jnp.float64


def _x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_numpy_grad_is_unsupported_and_names_providers():
    with pytest.raises(anyxp.UnsupportedError) as info:
        anyxp.backend("numpy").ad.grad(lambda x: x)
    assert "jax" in info.value.providers and "torch" in info.value.providers
    assert "jax, torch" in str(info.value)


def test_torch_grad_matches_analytic():
    be = anyxp.backend("torch", dtype="float64")
    x = be.asarray([0.3, -1.2, 2.0])
    g = be.ad.grad(lambda v: be.xp.sum(v**3 + be.xp.sin(v)))(x)
    np.testing.assert_allclose(
        be.to_numpy(g), 3 * be.to_numpy(x) ** 2 + np.cos(be.to_numpy(x)), rtol=1e-12
    )


def test_error_hierarchy():
    for err in (
        anyxp.BackendNotFoundError,
        anyxp.BackendUnavailableError,
        anyxp.UnsupportedError,
        anyxp.MixedBackendsError,
        anyxp.PluginError,
        anyxp.CommMismatchError,
    ):
        assert issubclass(err, anyxp.AnyxpError)


def test_misspelt_backend_suggests_the_closest():
    with pytest.raises(anyxp.BackendNotFoundError) as info:
        anyxp.backend("nmupy")
    assert info.value.suggestion == "numpy"
    assert "Did you mean 'numpy'?" in str(info.value) and "torch" in str(info.value)


def test_unhashable_devices_are_cached_by_a_stand_in():
    """CuPy's Device objects are unhashable; the backend cache must still key on them."""
    from anyxp.selection import _token

    class Device:
        __hash__ = None  # type: ignore[assignment]

        def __repr__(self):
            return "<Device 3>"

    token = _token(Device())
    assert hash(token) == hash(_token(Device()))
    assert _token("cpu") == "cpu"


# -- arrays no enabled plugin owns never fall through to numpy ------------------------------
class ForeignArray:
    """An array of a library no plugin knows: it has the standard's namespace hook."""

    def __array_namespace__(self, api_version=None):
        raise AssertionError("anyxp must not use an unknown library's namespace")


class ShapedThing:
    dtype = "float64"
    shape = (2,)


def test_like_an_unknown_library_is_an_error_not_numpy():
    for foreign in (ForeignArray(), ShapedThing(), (np.ones(2), ShapedThing())):
        with pytest.raises(anyxp.BackendNotFoundError) as info:
            anyxp.backend(like=foreign)
        assert "test_selection." in str(info.value) and "anyxp list" in str(info.value)
        assert "numpy.asarray" in str(info.value)
    assert anyxp.backend(like=[object(), 1.0]).name == "numpy"  # not arrays: ignored


LIKE_OUTCOMES = """
import json
import anyxp

def outcome(call):
    try:
        return call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

results = {}
"""


def like_outcomes(site, code: str, **env: str) -> dict:
    out = site.run(
        "-c", LIKE_OUTCOMES + textwrap.dedent(code) + "\nprint(json.dumps(results))", **env
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_arrays_of_a_blocked_builtin_name_the_variable(site):
    code = """
        import jax.numpy as jnp
        import torch
        from anyxp.ode import solve
        results["torch"] = outcome(lambda: anyxp.backend(like=torch.ones(2)).name)
        results["jax"] = outcome(lambda: anyxp.backend(like=jnp.ones(2)).name)
        results["solve"] = outcome(lambda: type(solve(lambda t, y: -y, (0.0, 1.0), torch.ones(2)).y).__module__)
    """
    denied = like_outcomes(site, code, ANYXP_DISABLED_PLUGINS="torch,jax")
    for key, name in (("torch", "torch"), ("jax", "jax"), ("solve", "torch")):
        assert denied[key].startswith("BackendNotFoundError"), denied[key]
        assert f"remove {name!r} from ANYXP_DISABLED_PLUGINS" in denied[key]
    allowed = like_outcomes(site, code, ANYXP_PLUGINS="numpy")
    assert allowed["torch"].startswith("BackendNotFoundError")
    assert "add 'torch' to ANYXP_PLUGINS" in allowed["torch"]


def test_arrays_of_a_broken_or_blocked_third_party_say_so(site):
    site.add(
        "anyxp-toylib",
        {"toylib": "anyxp_toylib"},
        {
            "anyxp_toylib": "raise RuntimeError('this plugin is broken on purpose')",
            "toylib": "class Array:\n    dtype = 'float64'\n    shape = (2,)\n",
            "otherlib": "class Array:\n    dtype = 'float64'\n    shape = (2,)\n",
        },
    )
    code = """
        import toylib, otherlib
        results["toylib"] = outcome(lambda: anyxp.backend(like=toylib.Array()).name)
        results["otherlib"] = outcome(lambda: anyxp.backend(like=otherlib.Array()).name)
    """
    broken = like_outcomes(site, code)
    assert "plugin 'toylib' from distribution 'anyxp-toylib' failed to import" in broken["toylib"]
    assert "broken on purpose" in broken["toylib"]
    blocked = like_outcomes(site, code, ANYXP_DISABLED_PLUGINS="toylib")
    assert "blocked by ANYXP_DISABLED_PLUGINS" in blocked["toylib"]
    # An array that no plugin's name points at still says that some plugins are blocked.
    assert blocked["otherlib"].startswith("BackendNotFoundError")
    assert "'toylib' (ANYXP_DISABLED_PLUGINS)" in blocked["otherlib"]
