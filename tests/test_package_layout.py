"""The package tree is the architecture: layers you can see, and a subscriber that needs no libbpf."""
import ast
import os
import subprocess
import sys

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flowcollect")
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "cli.py", "flow.py"}


def loaded_libraries(*modules):
    """The shared objects mapped by a fresh interpreter after importing `modules`."""
    code = "".join(f"import {m}\n" for m in modules) + "print(open('/proc/self/maps').read())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_a_subscriber_the_wire_format_and_the_json_encoder_load_no_libbpf():
    maps = loaded_libraries("flowcollect.subscriber.stream", "flowcollect.transport.wire",
                            "flowcollect.records.json_lines", "flowcollect.export.outputs")
    assert "libbpf" not in maps
    # The same check sees libbpf where it is loaded: the kernel layer's bindings.
    assert "libbpf" in loaded_libraries("flowcollect.kernel.bindings")


def test_the_top_level_holds_only_layers_the_cli_and_the_seed_facade():
    entries = {e for e in os.listdir(PACKAGE) if not e.startswith(("__pycache__", "."))}
    modules = {e for e in entries if e.endswith(".py")}
    packages = {e for e in entries if os.path.isdir(os.path.join(PACKAGE, e))}
    assert modules == TOP_LEVEL_MODULES
    assert entries == modules | packages
    assert packages == {"settings", "records", "kernel", "interfaces", "pipeline", "transport", "export",
                        "agent", "subscriber"}


def test_every_subpackage_says_in_two_lines_what_it_is_and_where_it_runs():
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if root == PACKAGE or "__init__.py" not in files:
            continue
        with open(os.path.join(root, "__init__.py")) as f:
            docstring = ast.get_docstring(ast.parse(f.read()))
        lines = [line for line in (docstring or "").splitlines() if line.strip()]
        assert len(lines) == 2, f"{root}: {docstring!r}"
        assert any(word in lines[1] for word in ("process", "Runs", "runs", "thread")), f"{root}: {lines[1]!r}"
