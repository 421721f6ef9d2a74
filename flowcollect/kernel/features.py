"""The opt-in features (--features) as the native extension numbers them, and what this kernel can do.

The probe reads the kernel's BTF (native/fc_native.c, fc_probe_features): no
privileges, nothing loaded, so --check-config answers the same as a start.
"""
from flowcollect.kernel.bindings import ffi, lib

FEATURE_BITS = {"drops": lib.FC_FEATURE_DROPS, "rtt": lib.FC_FEATURE_RTT, "dns": lib.FC_FEATURE_DNS}


def mask(features: tuple[str, ...]) -> int:
    """The FC_FEATURE_* bits of feature names (settings/values.py FEATURES)."""
    bits = 0
    for name in features:
        bits |= FEATURE_BITS[name]
    return bits


def supported() -> tuple[str, ...]:
    """The features this kernel can do."""
    bits = lib.fc_probe_features(0)
    return tuple(name for name, bit in FEATURE_BITS.items() if bits & bit)


def missing(features: tuple[str, ...]) -> str:
    """What this kernel lacks for `features`, one clause per feature it cannot do; "" when it can do them all."""
    wanted = mask(features)
    if not wanted & ~lib.fc_probe_features(wanted):
        return ""
    return str(ffi.string(lib.fc_last_error()).decode(errors="replace"))
