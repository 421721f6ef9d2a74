"""Check the capabilities the kernel side needs before touching BPF, so a
missing one is named in one line instead of surfacing as EPERM from libbpf."""
from flowcollect.kernel.errors import PrivilegeError

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_BPF = 39


def effective_capabilities(status_path: str = "/proc/self/status") -> int:
    with open(status_path) as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def missing_capabilities(caps: int) -> list[str]:
    """Names of the capabilities missing from the CapEff bit set `caps`."""
    missing = []
    # CAP_SYS_ADMIN stands in for CAP_BPF on kernels older than 5.8.
    if not (caps >> CAP_BPF & 1 or caps >> CAP_SYS_ADMIN & 1):
        missing.append("CAP_BPF")
    if not caps >> CAP_NET_ADMIN & 1:
        missing.append("CAP_NET_ADMIN")
    return missing


def require_kernel_privileges() -> None:
    missing = missing_capabilities(effective_capabilities())
    if missing:
        raise PrivilegeError(
            f"missing capability {' and '.join(missing)}: flowcollect loads BPF programs "
            "and attaches them at TC; run it as root"
        )
