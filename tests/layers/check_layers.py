#!/usr/bin/env python3
"""The layering rule of docs/architecture.md, checked: a layer's C files
include only headers of itself and of the layers it may call (downward
only, no cycles), and a layer above the machine includes only the
machine's public headers (not machine_devices.h or a device's internals).

Usage: check_layers.py SOURCE_ROOT. Prints each violation and exits 1."""
import pathlib
import re
import sys

# What each layer may call, as docs/architecture.md states it.
ALLOWED = {
    "common": set(),
    "machine": {"common"},
    "stream": {"machine", "common"},
    "replication": {"stream", "machine", "common"},
    "cluster": {"common"},
    "proxy": {"replication", "cluster", "stream", "machine", "common"},
    "disk": {"replication", "stream", "machine", "common"},
    "control": {"stream", "machine", "common"},
    "vm": {"proxy", "disk", "cluster", "replication", "control", "stream", "machine", "common"},
    "programs": {"vm", "control", "common"},
}
# The machine's headers for its own devices and tests, not for layers above.
MACHINE_INTERNAL = {"machine_devices.h", "virtio_net_device.h", "virtio_blk_device.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main() -> int:
    root = pathlib.Path(sys.argv[1])
    owner = {}
    for layer in ALLOWED:
        for header in (root / layer).glob("*.h"):
            if header.name in owner:
                print(f"{header}: header name also in {owner[header.name]}/ (ambiguous include)")
                return 1
            owner[header.name] = layer
    # The allowed sets must themselves be acyclic.
    def reaches(start, target, seen=()):
        return any(dep == target or (dep not in seen and reaches(dep, target, seen + (dep,)))
                   for dep in ALLOWED[start])
    problems = [f"layer {layer} may reach itself (a cycle)" for layer in ALLOWED if reaches(layer, layer)]
    for layer, allowed in ALLOWED.items():
        for source in sorted((root / layer).glob("*.[ch]")):
            for name in INCLUDE.findall(source.read_text()):
                home = owner.get(name)
                if home is None:
                    problems.append(f"{source.relative_to(root)}: includes \"{name}\", which no layer has")
                elif home != layer and home not in allowed:
                    problems.append(f"{source.relative_to(root)}: includes {home}/{name}; "
                                    f"{layer} may call only {sorted(allowed) or 'nothing'}")
                elif home == "machine" and layer != "machine" and name in MACHINE_INTERNAL:
                    problems.append(f"{source.relative_to(root)}: includes machine/{name}, "
                                    "the machine's internals (use machine.h)")
    for problem in problems:
        print(problem)
    print(f"layers: {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
