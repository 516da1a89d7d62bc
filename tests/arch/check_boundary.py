#!/usr/bin/env python3
"""The run boundary, checked on the built objects (nm) and the sources.

A backend (one file with a `struct backend_ops` row) may call up into the runner only
through its small API: run_post/run_post_event, service_ref/service_unref, the log
(logpipe_*), daemon_find, and the helpers every module uses. It never feeds the state
machine, writes instance rows, or calls the daemon. The runner reaches a backend only
through the table, so no backend is part of a cycle of mutually calling files.

Usage: check_boundary.py LIBHERDCORE.a SRC_DIR
"""
import collections
import os
import re
import subprocess
import sys

BACKENDS = ["proc", "slurm"]
# A backend may be more than one file (its own parts call each other): one node here.
PARTS = {"slurm_auth": "slurm"}
# Runner internals a backend must not call.
FORBIDDEN = re.compile(
    r"^(service_(feed|event|start|stop|restart|pause|remove|replace|create|want_up|check_idle|close_handles|free)"
    r"|svc_(step|resume)|daemon_(?!find$)\w+|store_instance_\w+|run_(start|drain|forget)|deps_\w+|api_\w+|ctl_\w+|cli_\w+)$")


def symbols(lib):
    out = subprocess.run(["nm", "-A", lib], capture_output=True, text=True, check=True).stdout
    defs, uses = {}, collections.defaultdict(set)
    for line in out.splitlines():
        # libherdcore.a:proc.c.o:0000000000000000 T proc_reap   /   libherdcore.a:proc.c.o:  U run_post
        m = re.match(r"^[^:]+:([^:]+)\.c\.o:\s*(?:[0-9a-f]+\s+)?([A-Za-z])\s+(\S+)$", line)
        if not m:
            continue
        mod, kind, sym = m.groups()
        if kind == "T":
            defs[sym] = mod
        elif kind == "U":
            uses[mod].add(sym)
    return defs, uses


def sccs(edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main():
    lib, src = sys.argv[1], sys.argv[2]
    defs, uses = symbols(lib)
    failures, checks = [], 0
    for b in BACKENDS + list(PARTS):
        checks += 1
        bad = sorted(s for s in uses.get(b, ()) if FORBIDDEN.match(s) and s in defs)
        if bad:
            failures.append("backend file %s.c calls runner internals: %s" % (b, ", ".join(bad)))
    defs = {sym: PARTS.get(mod, mod) for sym, mod in defs.items()}
    merged = collections.defaultdict(set)
    for mod, us in uses.items():
        merged[PARTS.get(mod, mod)] |= us
    uses = merged
    edges = collections.defaultdict(set)
    for mod, us in uses.items():
        for s in us:
            if s in defs and defs[s] != mod:
                edges[mod].add(defs[s])
    cycles = [c for c in sccs(edges) if len(c) > 1]
    for b in BACKENDS:
        checks += 1
        for c in cycles:
            if b in c:
                failures.append("backend %s.c is in a cycle of mutually calling files: %s" % (b, " ".join(c)))
    # No file but the Slurm backend and the config parser looks at a spec's Slurm section.
    for name in sorted(os.listdir(src)):
        if not name.endswith(".c") or name in ("slurm.c", "spec.c") or name.startswith("cfg"):
            continue
        checks += 1
        text = open(os.path.join(src, name)).read()
        if re.search(r"->slurm\b", text):
            failures.append("%s looks at spec->slurm (only the Slurm backend and cfg.c may)" % name)
    for f in failures:
        print("FAIL", f)
    print("cycles of mutually calling files: %s" % ("; ".join(" ".join(c) for c in cycles) or "none"))
    print("%d passed, %d failed" % (checks - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
