"""The whole benchmark suite (`make bench`): every part, one table, plots, about 13 minutes on 2 cores.

Runs each part in turn (progress on stderr), then prints ONE markdown table:
every figure with its median, min, max and runs, and beside it the baseline
measured in the same run and the ratio of medians, with the issue's aim where
there is one. Writes the table to bench/results/results.md and plots to
bench/results/*.png. A part that fails is reported and the others still run;
the exit code is then 1.
Run: .venv/bin/python -m bench.run_all [--only drain,peers] [--list]
"""
import argparse
import os
import platform
import sys
import time
import traceback

from bench.common import Result, progress, results_table
from bench.lab import interrupt_on_sigterm

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(BENCH_DIR, "results")

# Run counts and sizes: chosen so that the whole suite takes ~13 minutes here (757 s on 2026-12-01).
DRAIN_FLOWS, DRAIN_RUNS = (10_000, 100_000, 1_000_000), 9
KERNEL_RUNS, KERNEL_PACKETS = 7, 200_000
CLOCK_RUNS = 3
OVERHEAD_RUNS, OVERHEAD_SECONDS = 7, 2.0
STAGES_RECORDS, STAGES_RUNS = 100_000, 5
EXPORTS_FLOWS, EXPORTS_RUNS = 100_000, 5
E2E_FLOWS, E2E_RUNS = (10_000, 30_000, 100_000), 5
PEERS_RUNS, PEERS_LOOPS = 3, 10
MEMORY_FLOWS, MEMORY_RUNS = (5_000, 50_000, 500_000), 3
NEW_FLOWS_SECONDS, NEW_FLOWS_RUNS = 30.0, 3


class Suite:
    def __init__(self):
        self.results = []
        self.plots = {}  # plot name -> data for it
        self.failures = {}

    # --- adapters: each part's own measure() into rows of the one table ---

    def drain(self):
        from bench import drain
        series = {}
        for flows in DRAIN_FLOWS:
            figures = drain.measure(flows, DRAIN_RUNS)
            cpu, wall, floor, old_loop, per_key_c = figures[:5]
            per_key_py = figures[5] if len(figures) > 5 else None
            case = f"{flows:,} flows, folded from every CPU"
            self.results += [
                # Issue 14 asked 0.90 of the C batch loop at 100k and 1M flows; the table's drain makes no syscall.
                Result("drain", case, cpu, old_loop, aim=">= 0.90" if flows >= 100_000 else ""),
                Result("drain", case, cpu, floor),
                Result("drain", case, wall, old_loop),
                Result("drain", case, cpu, per_key_py or per_key_c, aim=">= 20" if flows == 100_000 else ""),
            ]
            if per_key_py:
                self.results.append(Result("drain", case, cpu, per_key_c))
            for fig in figures:
                series.setdefault(fig.name, []).append((flows, fig.median))
        self.plots["drain"] = series

    def clock(self):
        from bench import clock
        self.results += clock.measure(CLOCK_RUNS)

    def kernel_cost(self):
        from bench import kernel_cost
        self.results += kernel_cost.measure(KERNEL_RUNS, KERNEL_PACKETS)

    def feature_cost(self):
        from bench import feature_cost
        self.results += feature_cost.measure_features(KERNEL_RUNS, KERNEL_PACKETS)

    def overhead(self):
        from bench import overhead
        self.results += overhead.measure(OVERHEAD_RUNS, OVERHEAD_SECONDS)

    def stages(self):
        from bench import stages
        for share in stages.DUPLICATE_SHARES:
            (ours, seed_dict, floor), _dropped = stages.measure(STAGES_RECORDS, share, STAGES_RUNS)
            case = f"dedup + decorate, {share:.0%} duplicates, one core"
            self.results += [Result("stages", case, ours, seed_dict), Result("stages", case, ours, floor)]

    def exports(self):
        try:
            from bench import exports
        except ImportError:
            progress("exports: bench/exports.py not present, skipped")
            return
        affinity = os.sched_getaffinity(0)
        try:
            exports.pin_one_core()
            figures, sizes = exports.measure(EXPORTS_FLOWS, EXPORTS_RUNS)
        finally:
            os.sched_setaffinity(0, affinity)
        floor = figures[0]
        for fig in figures[1:]:
            self.results.append(Result("exports", f"{EXPORTS_FLOWS:,} flows a batch, one core, "
                                       f"{sizes[fig.name]:.0f} B/record", fig, floor))

    def end_to_end(self):
        from bench import end_to_end
        results = end_to_end.measure(E2E_FLOWS, E2E_RUNS)
        self.results += results
        cpu = [r for r in results if r.figure.name == "collector CPU" and r.baseline is not None]
        self.plots["cpu"] = {
            "collector": [(flows, r.figure.median) for flows, r in zip(E2E_FLOWS, cpu, strict=True)],
            "workers": [(flows, r.baseline.median) for flows, r in zip(E2E_FLOWS, cpu, strict=True)],
        }

    def peers(self):
        from bench import peers
        self.results += peers.measure(PEERS_RUNS, PEERS_LOOPS)

    def memory(self):
        from bench import memory
        results = memory.measure(MEMORY_FLOWS, MEMORY_RUNS)
        self.results += results
        series = {}
        for flows, r in zip([f for f in MEMORY_FLOWS for _ in range(3)], results, strict=True):
            series.setdefault(r.figure.name, []).append((flows, r.figure.median))
        self.plots["memory"] = series


    def new_flows(self):
        from bench import new_flows
        self.results += new_flows.measure(NEW_FLOWS_SECONDS, NEW_FLOWS_RUNS)


PARTS = ("drain", "kernel_cost", "clock", "feature_cost", "overhead", "stages", "exports", "end_to_end", "peers",
         "memory", "new_flows")


def plot(plots, out_dir):
    """PNG plots of what was measured; the paths written."""
    try:
        import matplotlib
    except ImportError:
        progress("plots skipped: matplotlib is missing (.venv/bin/pip install matplotlib)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    specs = {
        "drain": ("drain.png", "Drain: entries/s vs flows in the map", "flows in the map", "entries/s"),
        "cpu": ("cpu.png", "End to end: agent CPU per million records vs flows per eviction",
                "new flows per eviction", "CPU s / million records"),
        "memory": ("memory.png", "Memory vs cache_max_flows", "cache_max_flows", "MiB"),
    }
    written = []
    for name, series in plots.items():
        filename, title, xlabel, ylabel = specs[name]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, points in series.items():
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_xscale("log")
        if name != "cpu":
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, filename)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} x {model}, Linux {platform.release()}, Python {platform.python_version()}"


def report(suite, parts, seconds):
    aims = [r for r in suite.results if r.aim]
    lines = [
        "# flowcollect benchmark results",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        f"Parts: {', '.join(parts)}; whole run {seconds:.0f} s. "
        "Ratio = median of the figure / median of its baseline, both measured in the same run.",
        "",
        results_table(suite.results),
        "",
        "Aims: " + ("; ".join(f"{r.part} {r.case}: {r.figure.name} {r.aim} -> "
                              f"{'met' if r.met() else 'MISSED'} ({r.judged():.3g})" for r in aims)
                   or "none measured"),
    ]
    for part, error in suite.failures.items():
        lines += ["", f"**{part} failed**: {error}"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated parts, of: {','.join(PARTS)}")
    parser.add_argument("--list", action="store_true", help="list the parts and exit")
    args = parser.parse_args()
    if args.list:
        print("\n".join(PARTS))
        return 0
    parts = [p.strip().replace("-", "_") for p in args.only.split(",") if p.strip()] or list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; parts are {', '.join(PARTS)}")
    if os.geteuid() != 0:
        sys.exit("bench: run as root (BPF, network namespaces, TC)")
    interrupt_on_sigterm()
    suite = Suite()
    started = time.perf_counter()
    for i, part in enumerate(parts, 1):
        progress(f"[{i}/{len(parts)}] {part} (at {time.perf_counter() - started:.0f} s)")
        try:
            getattr(suite, part)()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one broken part must not hide the others' figures
            traceback.print_exc()
            suite.failures[part] = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    os.makedirs(RESULTS_DIR, exist_ok=True)
    text = report(suite, parts, seconds)
    with open(os.path.join(RESULTS_DIR, "results.md"), "w") as f:
        f.write(text)
    written = plot(suite.plots, RESULTS_DIR) if suite.plots else []
    print(text)
    print(f"written: {os.path.join(RESULTS_DIR, 'results.md')}" + "".join(f", {p}" for p in written))
    print(f"bench: total {seconds:.0f} s ({seconds / 60:.1f} min)")
    return 1 if suite.failures else 0


if __name__ == "__main__":
    sys.exit(main())
