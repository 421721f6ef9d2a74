"""Build of flowcollect's native parts: the BPF object (clang + bpftool
skeleton) first, then the cffi extension that embeds it."""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "native"))
import build_bpf  # noqa: E402  (native/ is not a package: it is not installed)


class BuildBpfThenExtension(build_ext):
    def run(self):
        build_bpf.build()
        super().run()


setup(
    cffi_modules=["native/build_native.py:ffibuilder"],
    cmdclass={"build_ext": BuildBpfThenExtension},
)
