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
