"""Build of flowcollect's native parts: the BPF object (clang + bpftool
skeleton) first, then the cffi extension that embeds it."""
import importlib.util
import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

# native/ is not a package of the project (it is never installed): load its builder by path.
_spec = importlib.util.spec_from_file_location(
    "build_bpf", os.path.join(os.path.dirname(os.path.abspath(__file__)), "native", "build_bpf.py"))
build_bpf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_bpf)


class BuildBpfThenExtension(build_ext):
    def run(self) -> None:
        build_bpf.build()
        super().run()


setup(
    cffi_modules=["native/build_native.py:ffibuilder"],
    cmdclass={"build_ext": BuildBpfThenExtension},
)
