"""The plugin registry, tested with real throwaway distributions in a subprocess."""

from __future__ import annotations

import json

BROKEN = """
import pathlib
pathlib.Path("broken_was_imported").write_text("yes")
raise RuntimeError("this plugin is broken on purpose")
"""

TOY = """
import anyxp

class ToyArray:  # never instantiated: the toy backend owns no real arrays
    pass

@anyxp.hookimpl
def anyxp_backends():
    return [anyxp.BackendSpec(
        name={name!r},
        factory="{module}:create",
        array_types=("{module}.ToyArray",),
        requires=("numpy",),
        capabilities={{"arrays", "float64"}},
    )]

def create(spec, *, device=None, dtype=None):
    import array_api_compat.numpy as xp
    return anyxp.Backend.from_namespace(spec, xp, device=device, dtype=dtype)
"""


def toy(name: str, module: str) -> str:
    return TOY.format(name=name, module=module)


def list_json(site, **env) -> dict:
    out = site.run("-m", "anyxp", "list", "--json", **env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_broken_plugin_is_reported_not_fatal(site):
    site.add("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    table = list_json(site)
    errors = {p["name"]: p for p in table["plugins"] if p["error"]}
    assert set(errors) == {"broken"}
    assert errors["broken"]["distribution"] == "broken-dist"
    assert "broken on purpose" in errors["broken"]["error"]
    assert {"numpy", "torch", "jax"} <= {b["name"] for b in table["backends"]}
    text = site.run("-m", "anyxp", "list")
    assert (
        text.returncode == 0 and "broken-dist" in text.stdout and "broken on purpose" in text.stdout
    )
    ok = site.run("-c", "import anyxp; print(anyxp.backend('numpy').name)")
    assert ok.stdout.strip() == "numpy", ok.stderr


def test_allow_list_blocks_before_import(site):
    site.add("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    table = list_json(site, ANYXP_PLUGINS="numpy")
    assert not (site.root / "broken_was_imported").exists()
    assert {b["name"] for b in table["backends"]} == {"numpy"}
    blocked = {p["name"] for p in table["plugins"] if p["blocked"]}
    assert {"broken", "torch", "jax", "mpi"} <= blocked


def test_deny_list_blocks_before_import(site):
    site.add("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    table = list_json(site, ANYXP_DISABLED_PLUGINS="broken,torch")
    assert not (site.root / "broken_was_imported").exists()
    names = {b["name"] for b in table["backends"]}
    assert "torch" not in names and "jax" in names


def test_numpy_cannot_be_disabled(site):
    out = site.run(
        "-W",
        "always",
        "-c",
        "import anyxp; print(anyxp.backend().name)",
        ANYXP_DISABLED_PLUGINS="numpy",
    )
    assert out.stdout.strip() == "numpy", out.stderr
    assert "cannot be disabled" in out.stderr


def test_strict_mode_turns_a_broken_plugin_into_an_error(site):
    site.add("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    out = site.run("-c", "import anyxp; anyxp.backend('numpy')", ANYXP_STRICT_PLUGINS="1")
    assert out.returncode != 0
    assert "PluginError" in out.stderr and "broken-dist" in out.stderr


def test_malformed_specs_are_reported(site):
    site.add(
        "malformed-dist",
        {"notaspec": "notaspec_plugin", "badcap": "badcap_plugin"},
        {
            "notaspec_plugin": """
                import anyxp
                @anyxp.hookimpl
                def anyxp_backends():
                    return ["numpy but as a string"]
            """,
            "badcap_plugin": """
                import anyxp
                @anyxp.hookimpl
                def anyxp_backends():
                    return [anyxp.BackendSpec(name="badcap", factory="x:y",
                                              capabilities={"arrays", "teleportation"})]
            """,
        },
    )
    errors = {p["name"]: p["error"] for p in list_json(site)["plugins"] if p["error"]}
    assert "expected anyxp.BackendSpec" in errors["notaspec"]
    assert "teleportation" in errors["badcap"]


def test_duplicate_names_name_both_distributions(site):
    site.add("first-dist", {"toy_a": "toy_a"}, {"toy_a": toy("toy", "toy_a")})
    site.add("second-dist", {"toy_b": "toy_b"}, {"toy_b": toy("toy", "toy_b")})
    out = site.run("-c", "import anyxp; anyxp.backend('toy')")
    assert out.returncode != 0
    assert "PluginError" in out.stderr
    assert "first-dist" in out.stderr and "second-dist" in out.stderr
    # Other backends are unaffected, and the conflict shows in `anyxp list`.
    ok = site.run("-c", "import anyxp; print(anyxp.backend('numpy').name)")
    assert ok.stdout.strip() == "numpy"
    rows = [b for b in list_json(site)["backends"] if b["name"] == "toy"]
    assert len(rows) == 2 and all("conflict" in r for r in rows)


def test_third_party_plugin_registers_like_a_builtin(site):
    site.add("toy-dist", {"toy": "toy_plugin"}, {"toy_plugin": toy("toy", "toy_plugin")})
    out = site.run("-c", "import anyxp; be = anyxp.backend('toy'); print(be.name, be.float_dtype)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["toy", "float64"]
    row = next(b for b in list_json(site)["backends"] if b["name"] == "toy")
    assert row["distribution"] == "toy-dist" and row["available"]


def test_missing_library_names_the_install_command(site):
    site.add(
        "needs-dist",
        {"needs": "needs_plugin"},
        {
            "needs_plugin": """
                import anyxp
                @anyxp.hookimpl
                def anyxp_backends():
                    return [anyxp.BackendSpec(name="needs", factory="needs_impl:create",
                        requires=("no_such_array_library_xyz",),
                        install="pip install no-such-array-library-xyz",
                        array_types=("no_such_array_library_xyz.Array",),
                        capabilities={"arrays"})]
            """
        },
    )
    out = site.run("-c", "import anyxp; anyxp.backend('needs')")
    assert "BackendUnavailableError" in out.stderr
    assert "pip install no-such-array-library-xyz" in out.stderr
    row = next(b for b in list_json(site)["backends"] if b["name"] == "needs")
    assert not row["available"] and "no_such_array_library_xyz" in row["unavailable_reason"]


# -- built-ins are anyxp's own, whatever a third party names its entry point ---------------
IMPOSTOR = """
import pathlib
pathlib.Path("impostor_was_imported").write_text("yes")
import anyxp

@anyxp.hookimpl
def anyxp_backends():
    return [
        anyxp.BackendSpec(name="numpy", factory="impostor:create", aliases=("fastnp",),
                          array_types=("numpy.ndarray",), capabilities={"arrays"}),
        anyxp.BackendSpec(name="np", factory="impostor:create", capabilities={"arrays"}),
    ]

@anyxp.hookimpl
def anyxp_comms():
    return [anyxp.CommSpec(name="local", factory="impostor:create")]

def create(*args, **kwargs):
    raise RuntimeError("the impostor was used")
"""

WHO_ANSWERS = """
import json
import numpy as np
import anyxp
answers = {
    "default": anyxp.backend().spec.factory,
    "name": anyxp.backend("numpy").spec.factory,
    "alias": anyxp.backend("np").spec.factory,
    "like": anyxp.backend(like=np.ones(2)).spec.factory,
    "comm": type(anyxp.backend("numpy", comm="local").comm).__module__,
    "available": anyxp.get_registry().available_backends(),
}
print(json.dumps(answers))
"""


def add_impostor(site) -> None:
    site.add("impostor-numpy", {"numpy": "impostor"}, {"impostor": IMPOSTOR})


def test_third_party_numpy_never_replaces_the_builtin(site):
    # The site comes first on sys.path, so the impostor is discovered before anyxp.
    add_impostor(site)
    out = site.run("-c", WHO_ANSWERS)
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)
    ours = "anyxp.plugins.numpy._backend:create"
    assert [answers[k] for k in ("default", "name", "alias", "like")] == [ours] * 4
    assert answers["comm"].startswith("anyxp.") and "numpy" in answers["available"]
    assert "impostor-numpy" in out.stderr  # reported when the registry is built
    table = list_json(site)
    owners = {(c["kind"], c["name"]): c["owner"] for c in table["conflicts"]}
    assert owners[("backend", "numpy")] == "anyxp"
    assert owners[("backend", "np")] == "anyxp" and owners[("comm", "local")] == "anyxp"
    assert owners[("array type", "numpy.ndarray")] == "anyxp"
    rows = [b for b in table["backends"] if b["name"] == "numpy"]
    assert {(r["distribution"], r["in_use"]) for r in rows} == {
        ("anyxp", True),
        ("impostor-numpy", False),
    }
    assert all("conflict" in r for r in rows)
    strict = site.run("-c", "import anyxp; anyxp.backend()", ANYXP_STRICT_PLUGINS="1")
    assert strict.returncode != 0
    assert "PluginError" in strict.stderr and "impostor-numpy" in strict.stderr


def test_a_third_party_entry_point_named_numpy_can_be_disabled(site):
    add_impostor(site)
    out = site.run("-W", "always", "-c", WHO_ANSWERS, ANYXP_DISABLED_PLUGINS="numpy,torch")
    assert out.returncode == 0, out.stderr
    assert not (site.root / "impostor_was_imported").exists()
    assert json.loads(out.stdout)["default"] == "anyxp.plugins.numpy._backend:create"
    assert "cannot be disabled" in out.stderr
    plugins = list_json(site, ANYXP_DISABLED_PLUGINS="numpy")["plugins"]
    state = {(p["distribution"], p["name"]): (p["builtin"], p["blocked"]) for p in plugins}
    assert state[("impostor-numpy", "numpy")] == (False, True)
    assert state[("anyxp", "numpy")] == (True, False)


def test_builtin_plugins_are_named_after_their_library():
    """Blocked built-ins are recognised from an array's module without importing them."""
    import anyxp

    reg = anyxp.get_registry()
    builtins = [p for p in reg.owners("backend") if p.plugin.builtin]
    assert {p.spec.name for p in builtins} >= {"numpy", "torch", "jax", "dask"}
    for p in builtins:
        assert p.plugin.name in {t.partition(".")[0] for t in p.spec.array_types}, p


# -- overlapping array types ----------------------------------------------------------------
def typed(name: str, module: str, types: tuple[str, ...]) -> str:
    return toy(name, module).replace(f'("{module}.ToyArray",)', repr(types))


def test_overlapping_types_are_reported_and_a_builtin_keeps_its_own(site):
    site.add(
        "npfast-dist",
        {"npfast": "npfast"},
        {"npfast": typed("npfast", "npfast", ("numpy.ndarray", "numpy.ma.MaskedArray"))},
    )
    code = (
        "import numpy as np, anyxp; "
        "print(anyxp.backend(like=np.ones(2)).name, anyxp.backend(like=np.ma.ones(2)).name)"
    )
    out = site.run("-c", code)
    assert out.stdout.split() == ["numpy", "numpy"], out.stderr
    assert "'numpy.ndarray'" in out.stderr and "npfast-dist" in out.stderr  # the warning
    conflicts = list_json(site)["conflicts"]
    assert [(c["kind"], c["name"], c["owner"]) for c in conflicts] == [
        ("array type", "numpy.ndarray", "anyxp")
    ]
    strict = site.run("-c", code, ANYXP_STRICT_PLUGINS="1")
    assert strict.returncode != 0 and "npfast-dist" in strict.stderr


def test_two_third_parties_claiming_one_type_refuse_to_guess(site):
    shared = "class Array:\n    dtype = 'float64'\n    shape = (2,)\n"
    site.add(
        "alpha-dist", {"alpha": "alpha"}, {"alpha": typed("alpha", "alpha", ("shared.Array",))}
    )
    site.add(
        "beta-dist",
        {"beta": "beta"},
        {"beta": typed("beta", "beta", ("shared.Array",)), "shared": shared},
    )
    out = site.run("-c", "import anyxp, shared; anyxp.backend(like=shared.Array())")
    assert out.returncode != 0
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("anyxp.errors.PluginError") and "shared.Array" in error
    assert "alpha-dist" in error and "beta-dist" in error
    ok = site.run("-c", "import anyxp; print(anyxp.backend('beta').name)")
    assert ok.stdout.strip() == "beta", ok.stderr
    assert "alpha-dist" in ok.stderr and "beta-dist" in ok.stderr  # reported at registration


# -- reports that say what happened, once ---------------------------------------------------
def test_a_hook_returning_a_string_is_reported_once(site):
    site.add(
        "string-dist",
        {"stringy": "stringy"},
        {
            "stringy": """
                import anyxp
                @anyxp.hookimpl
                def anyxp_backends():
                    return "numpy but as a string"
            """
        },
    )
    error = next(p["error"] for p in list_json(site)["plugins"] if p["name"] == "stringy")
    assert "expected an iterable of BackendSpec, got str" in error
    assert error.count("expected") == 1, error


def test_a_broken_or_blocked_plugin_is_named_not_unknown(site):
    site.add("anyxp-mylib", {"mylib": "anyxp_mylib"}, {"anyxp_mylib": BROKEN})
    said = "plugin 'mylib' from distribution 'anyxp-mylib' failed to import"
    check = site.run("-m", "anyxp", "check", "mylib")
    assert check.returncode == 2
    assert said in check.stderr and "broken on purpose" in check.stderr
    assert "unknown backend" not in check.stderr
    by_name = site.run("-c", "import anyxp; anyxp.backend('mylib')")
    assert "BackendNotFoundError" in by_name.stderr and said in by_name.stderr
    blocked = site.run("-c", "import anyxp; anyxp.backend('mylib')", ANYXP_DISABLED_PLUGINS="mylib")
    assert "blocked by ANYXP_DISABLED_PLUGINS" in blocked.stderr
    assert "remove 'mylib' from ANYXP_DISABLED_PLUGINS" in blocked.stderr


def test_strict_flag_reads_any_boolean_spelling(site):
    site.add("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    code = "import anyxp; anyxp.backend('numpy')"
    for value in ("On", "TRUE", "yes"):
        out = site.run("-c", code, ANYXP_STRICT_PLUGINS=value)
        assert out.returncode != 0 and "PluginError" in out.stderr, value
    odd = site.run("-c", code, ANYXP_STRICT_PLUGINS="maybe")
    assert odd.returncode == 0 and "ANYXP_STRICT_PLUGINS='maybe' is not a boolean" in odd.stderr


def test_plugin_lists_warn_on_names_no_entry_point_has(site):
    out = site.run("-c", "import anyxp; anyxp.backend()", ANYXP_DISABLED_PLUGINS="trch")
    assert out.returncode == 0, out.stderr
    assert "ANYXP_DISABLED_PLUGINS names 'trch'" in out.stderr
    assert "Did you mean 'torch'?" in out.stderr


def test_an_allow_list_of_no_names_blocks_nothing(site):
    table = list_json(site, ANYXP_PLUGINS=" , ,")
    assert not [p["name"] for p in table["plugins"] if p["blocked"]]
    assert {"numpy", "torch", "jax"} <= {b["name"] for b in table["backends"]}
