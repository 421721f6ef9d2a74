# The cffi-generated extension (native/build_native.py) carries no type information: its `ffi`
# and `lib` are typed by the C compiler, not by mypy. flowcollect/kernel/bindings.py and
# flowcollect/kernel/flow_kernel.py are the only users, and wrap every call in typed functions.
from typing import Any

ffi: Any
lib: Any
