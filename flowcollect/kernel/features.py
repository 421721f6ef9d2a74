"""The opt-in features (--features) as the native extension numbers them, and what this kernel can do.

The probe reads the kernel's BTF (native/fc_features.c, fc_probe_features). For rtt it
also loads an empty fentry program to learn whether this kernel can attach one (a kernel
may have the BTF and no trampolines); unprivileged, that load fails and the probe takes the
tcp_probe tracepoint or kprobes instead, so --check-config can name another way to attach
than a start as root, but the same verdict on whether rtt can work.
"""
from flowcollect.kernel.bindings import check, ffi, lib

FEATURE_BITS = {"drops": lib.FC_FEATURE_DROPS, "rtt": lib.FC_FEATURE_RTT, "dns": lib.FC_FEATURE_DNS}


def mask(features: tuple[str, ...]) -> int:
    """The FC_FEATURE_* bits of feature names (settings/values.py FEATURES)."""
    bits = 0
    for name in features:
        bits |= FEATURE_BITS[name]
    return bits


def missing(features: tuple[str, ...]) -> str:
    """What this kernel lacks for `features`, one clause per feature it cannot do; "" when it can do them all."""
    wanted = mask(features)
    if not wanted & ~lib.fc_probe_features(wanted):
        return ""
    return str(ffi.string(lib.fc_last_error()).decode(errors="replace"))


MAX_DROP_REASONS = 1024


def drop_reasons() -> dict[int, str]:
    """The kernel's enum skb_drop_reason from its BTF, value -> name without the SKB_DROP_REASON_ prefix
    (NETFILTER_DROP, NO_SOCKET, ...): read at run time because every kernel release adds some."""
    out = ffi.new("struct fc_drop_reason[]", MAX_DROP_REASONS)
    n = check(lib.fc_drop_reasons(out, MAX_DROP_REASONS))
    return {int(out[i].value): ffi.string(out[i].name).decode() for i in range(n)}
