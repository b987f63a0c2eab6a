#!/usr/bin/env python3
"""Writes an uncompressed newc cpio archive (the initramfs format Linux
reads) from a list file, without root: device nodes are described in the
list, not taken from the file system.

Usage: mkcpio.py LIST OUTPUT.cpio

The list has the same line forms as the kernel's usr/gen_init_cpio:
    dir  NAME MODE UID GID
    nod  NAME MODE UID GID c|b MAJOR MINOR
    file NAME SOURCE MODE UID GID
MODE is octal. Blank lines and lines starting with '#' are skipped.
Every time stamp is 0, so the same inputs give the same bytes.
"""
import stat
import sys

NEWC_MAGIC = b"070701"


def pad4(length):
    return (4 - length % 4) % 4


class CpioWriter:
    def __init__(self, output):
        self.output = output
        self.next_inode = 1

    def entry(self, name, mode, uid=0, gid=0, data=b"", rdev=(0, 0)):
        name_bytes = name.lstrip("/").encode() + b"\0"
        fields = [
            self.next_inode, mode, uid, gid,
            1,                      # nlink
            0,                      # mtime
            len(data),
            0, 0,                   # major/minor of the device holding the file
            rdev[0], rdev[1],       # major/minor of a device node
            len(name_bytes),
            0,                      # checksum (unused in newc)
        ]
        self.next_inode += 1
        header = NEWC_MAGIC + b"".join(b"%08x" % field for field in fields)
        self.output.write(header + name_bytes)
        self.output.write(b"\0" * pad4(len(header) + len(name_bytes)))
        self.output.write(data)
        self.output.write(b"\0" * pad4(len(data)))

    def trailer(self):
        self.next_inode = 0
        self.entry("TRAILER!!!", 0)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mkcpio.py LIST OUTPUT.cpio")
    list_path, output_path = sys.argv[1], sys.argv[2]
    with open(list_path) as listing, open(output_path, "wb") as output:
        writer = CpioWriter(output)
        for line_number, line in enumerate(listing, 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            kind = words[0]
            try:
                if kind == "dir" and len(words) == 5:
                    name, mode, uid, gid = words[1], int(words[2], 8), int(words[3]), int(words[4])
                    writer.entry(name, stat.S_IFDIR | mode, uid, gid)
                elif kind == "nod" and len(words) == 8:
                    name, mode, uid, gid = words[1], int(words[2], 8), int(words[3]), int(words[4])
                    node_type = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}[words[5]]
                    writer.entry(name, node_type | mode, uid, gid,
                                 rdev=(int(words[6]), int(words[7])))
                elif kind == "file" and len(words) == 6:
                    name, source = words[1], words[2]
                    mode, uid, gid = int(words[3], 8), int(words[4]), int(words[5])
                    with open(source, "rb") as source_file:
                        data = source_file.read()
                    writer.entry(name, stat.S_IFREG | mode, uid, gid, data)
                else:
                    raise ValueError("unknown line form")
            except (ValueError, KeyError, OSError) as error:
                sys.exit(f"mkcpio: {list_path}:{line_number}: {error}: {line.strip()}")
        writer.trailer()


if __name__ == "__main__":
    main()
