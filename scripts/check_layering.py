#!/usr/bin/env python3
"""Fails when a component under src/ includes a header of a component it may not depend on.

The allowed edges mirror docs/architecture.md ("Targets and layering")."""
import pathlib
import re
import sys

ALLOWED = {
    "common": set(),
    "config": {"common"},
    "autoscaler": {"config", "common"},
    "rpc": {"common"},
    "metrics": {"rpc", "common"},
    "sdk": {"metrics"},
    "router": {"metrics", "rpc", "common", "config"},
    "node": {"metrics", "rpc", "config", "common"},
    "controller": {"metrics", "autoscaler", "rpc", "config", "common"},
    "proxy": {"metrics", "router", "rpc", "config", "common"},
    "replica": {"metrics", "sdk", "router", "rpc", "config", "common"},
    "launch": {"rpc", "common"},
    "cli": {"launch", "node", "rpc", "config", "common"},  # node: resource options only
    # Programs outside the cluster reuse the replica's handle runtime and start instances.
    "client": {"launch", "replica", "sdk", "router", "rpc", "config", "common"},
}
PROCESS_LIBS = {"controller", "proxy", "replica", "cli", "node"}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([a-z_]+)/', re.M)


def main(root: pathlib.Path) -> int:
    src = root / "src"
    errors = []
    for comp_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        comp = comp_dir.name
        if comp not in ALLOWED:
            errors.append(f"src/{comp}: unknown component; add it to {__file__}")
            continue
        for f in sorted(comp_dir.rglob("*")):
            if f.suffix not in (".h", ".cc"):
                continue
            for dep in INCLUDE.findall(f.read_text()):
                if dep == comp or dep not in ALLOWED:
                    continue  # own headers, third-party, generated serve/v1
                if dep not in ALLOWED[comp]:
                    errors.append(f"{f.relative_to(root)}: {comp} may not include {dep}/")
    public = root / "include" / "serve"
    for f in sorted(public.glob("*.h")):
        for line in f.read_text().splitlines():
            m = re.match(r'\s*#\s*include\s*[<"]([^>"]+)[>"]', line)
            if m and re.match(r"(boost|grpc|grpcpp|absl|google|spdlog|fmt|yaml-cpp)/", m.group(1)):
                errors.append(f"{f.relative_to(root)}: public SDK header includes {m.group(1)}")
    for e in errors:
        print(e)
    print(f"layering: {len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()))
