/* Bare-metal RISC-V ELF64 loader.
 *
 * The whole file is read into memory and every offset, size and count in it
 * is checked against the file's length before it is used: the file is
 * input, not trusted. Everything is validated before the first byte goes
 * into guest RAM, so a bad file leaves the machine as it was.
 *
 * Segments are loaded at their physical (LMA) addresses, since harts start
 * with translation off. The entry point and `tohost` are link-time
 * (virtual) addresses; when one falls inside a segment whose virtual and
 * physical addresses differ, it is moved along with the segment. */
#include "elf_loader.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "machine_devices.h"

/* ELF structures are copied out of the file with memcpy, which gives the
 * right values only when the host byte order matches the file's (checked
 * to be little-endian). */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "elf_loader.c needs a little-endian host"
#endif

/* Far larger than any bare-metal image or kernel; a bigger file is almost
 * certainly the wrong file, and reading it would just exhaust memory. */
#define ELF_MAX_FILE_SIZE (1ull << 30)

struct elf_file {
    const char *path;
    uint8_t *data;
    size_t size;
    Elf64_Ehdr header;
    Elf64_Phdr *segments; /* copy of the program header table */
    unsigned segment_count;
};

static bool range_in_file(const struct elf_file *elf, uint64_t offset, uint64_t length)
{
    return offset <= elf->size && length <= elf->size - offset;
}

/* Reads the whole file. Never returns an empty buffer on success. */
static int read_file(struct elf_file *elf, struct error *err)
{
    const char *path = elf->path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "%s: cannot open ELF file", path);

    struct stat status;
    if (fstat(fd, &status) != 0) {
        error_set_errno(err, "%s: cannot stat ELF file", path);
        close(fd);
        return -1;
    }
    if (!S_ISREG(status.st_mode)) {
        close(fd);
        return error_set(err, "%s: not a regular file, so not an ELF executable", path);
    }
    if (status.st_size == 0) {
        close(fd);
        return error_set(err, "%s: empty file (0 bytes), not an ELF executable", path);
    }
    if ((uint64_t)status.st_size > ELF_MAX_FILE_SIZE) {
        close(fd);
        return error_set(err,
                         "%s: file is %llu bytes, larger than the %llu MiB limit "
                         "for ELF images",
                         path, (unsigned long long)status.st_size, ELF_MAX_FILE_SIZE >> 20);
    }

    size_t size = (size_t)status.st_size;
    uint8_t *data = malloc(size);
    if (!data) {
        close(fd);
        return error_set(err, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t done = 0;
    while (done < size) {
        ssize_t got = read(fd, data + done, size - done);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            error_set_errno(err, "%s: cannot read ELF file", path);
            free(data);
            close(fd);
            return -1;
        }
        if (got == 0)
            break; /* shrank since fstat: check what we got */
        done += (size_t)got;
    }
    close(fd);
    if (done == 0) {
        free(data);
        return error_set(err, "%s: empty file (0 bytes), not an ELF executable", path);
    }
    elf->data = data;
    elf->size = done;
    return 0;
}

/* clang-format off */
static const char *machine_name(uint16_t machine)
{
    switch (machine) {
    case EM_NONE:    return "no machine (EM_NONE)";
    case EM_386:     return "x86 (i386)";
    case EM_X86_64:  return "x86-64";
    case EM_ARM:     return "32-bit ARM";
    case EM_AARCH64: return "AArch64";
    case EM_PPC:     return "PowerPC";
    case EM_PPC64:   return "64-bit PowerPC";
    case EM_S390:    return "IBM S/390";
    case EM_MIPS:    return "MIPS";
    case EM_SPARCV9: return "SPARC V9";
#ifdef EM_LOONGARCH
    case EM_LOONGARCH: return "LoongArch";
#endif
    case EM_BPF:     return "eBPF";
    default:         return NULL;
    }
}
/* clang-format on */

static int check_identification(const struct elf_file *elf, struct error *err)
{
    const char *path = elf->path;
    const uint8_t *ident = elf->data;

    size_t magic_bytes = elf->size < SELFMAG ? elf->size : SELFMAG;
    if (memcmp(ident, ELFMAG, magic_bytes) != 0) {
        char seen[3 * SELFMAG] = ""; /* "xx xx xx xx" */
        for (size_t i = 0; i < magic_bytes; i++)
            snprintf(seen + strlen(seen), sizeof seen - strlen(seen), "%s%02x", i ? " " : "", ident[i]);
        return error_set(err,
                         "%s: not an ELF file (it starts with bytes %s; "
                         "ELF files start with 7f 45 4c 46)",
                         path, seen);
    }
    if (elf->size < EI_NIDENT)
        return error_set(err,
                         "%s: truncated ELF header (file has %zu bytes, "
                         "the ELF identification alone needs %d)",
                         path, elf->size, EI_NIDENT);

    switch (ident[EI_CLASS]) {
    case ELFCLASS64:
        break;
    case ELFCLASS32:
        return error_set(err,
                         "%s: 32-bit ELF file (ELFCLASS32); colo runs RV64 "
                         "and needs an ELF64 executable",
                         path);
    default:
        return error_set(err, "%s: invalid ELF class %u (expected ELFCLASS64)", path, ident[EI_CLASS]);
    }
    switch (ident[EI_DATA]) {
    case ELFDATA2LSB:
        break;
    case ELFDATA2MSB:
        return error_set(err,
                         "%s: big-endian ELF file (ELFDATA2MSB); RISC-V "
                         "executables are little-endian",
                         path);
    default:
        return error_set(err, "%s: invalid ELF data encoding %u (expected little-endian)", path, ident[EI_DATA]);
    }
    if (ident[EI_VERSION] != EV_CURRENT)
        return error_set(err, "%s: unsupported ELF version %u", path, ident[EI_VERSION]);
    return 0;
}

static int check_header(struct elf_file *elf, struct error *err)
{
    const char *path = elf->path;
    if (check_identification(elf, err) != 0)
        return -1;
    if (elf->size < sizeof elf->header)
        return error_set(err,
                         "%s: truncated ELF header (file has %zu bytes, the ELF64 "
                         "header needs %zu)",
                         path, elf->size, sizeof elf->header);
    memcpy(&elf->header, elf->data, sizeof elf->header);
    const Elf64_Ehdr *header = &elf->header;

    if (header->e_machine != EM_RISCV) {
        const char *name = machine_name(header->e_machine);
        if (name)
            return error_set(err, "%s: ELF file is for %s (e_machine %u), not RISC-V", path, name, header->e_machine);
        return error_set(err, "%s: ELF file is for machine number %u, not RISC-V (%u)", path, header->e_machine,
                         EM_RISCV);
    }

    switch (header->e_type) {
    case ET_EXEC:
        break;
    case ET_REL:
        return error_set(err,
                         "%s: relocatable object file (ET_REL), not an executable; "
                         "link it first",
                         path);
    case ET_DYN:
        return error_set(err,
                         "%s: shared object or position-independent executable "
                         "(ET_DYN), not an executable (ET_EXEC); colo loads static "
                         "executables linked at fixed addresses",
                         path);
    case ET_CORE:
        return error_set(err, "%s: core dump (ET_CORE), not an executable (ET_EXEC)", path);
    default:
        return error_set(err, "%s: ELF type %u is not an executable (ET_EXEC)", path, header->e_type);
    }
    return 0;
}

static int read_segments(struct elf_file *elf, struct error *err)
{
    const char *path = elf->path;
    const Elf64_Ehdr *header = &elf->header;

    if (header->e_phnum == 0)
        return error_set(err, "%s: no program headers, so no loadable segments", path);
    /* PN_XNUM means the real count is kept in section 0; no bare-metal
     * image comes anywhere near 65535 segments. */
    if (header->e_phnum == PN_XNUM)
        return error_set(err,
                         "%s: extended program header numbering (PN_XNUM) "
                         "is not supported",
                         path);
    if (header->e_phentsize != sizeof(Elf64_Phdr))
        return error_set(err, "%s: program header entries are %u bytes, expected %zu", path, header->e_phentsize,
                         sizeof(Elf64_Phdr));
    uint64_t table_size = (uint64_t)header->e_phnum * sizeof(Elf64_Phdr);
    if (!range_in_file(elf, header->e_phoff, table_size))
        return error_set(err,
                         "%s: program header table (offset 0x%llx, %u entries) "
                         "extends past the end of the file (%zu bytes)",
                         path, (unsigned long long)header->e_phoff, header->e_phnum, elf->size);

    elf->segments = calloc(header->e_phnum, sizeof *elf->segments);
    if (!elf->segments)
        return error_set(err, "%s: out of memory for %u program headers", path, header->e_phnum);
    /* Copied rather than pointed at: e_phoff need not be aligned. */
    memcpy(elf->segments, elf->data + header->e_phoff, (size_t)table_size);
    elf->segment_count = header->e_phnum;
    return 0;
}

/* Checks every PT_LOAD segment against the file and guest RAM. */
static int check_segments(const struct elf_file *elf, const struct guest_ram *ram, struct error *err)
{
    const char *path = elf->path;
    unsigned loadable = 0;
    for (unsigned i = 0; i < elf->segment_count; i++) {
        const Elf64_Phdr *segment = &elf->segments[i];
        if (segment->p_type != PT_LOAD)
            continue;
        if (segment->p_filesz > segment->p_memsz)
            return error_set(err,
                             "%s: segment %u has more file bytes (0x%llx) than "
                             "memory bytes (0x%llx)",
                             path, i, (unsigned long long)segment->p_filesz, (unsigned long long)segment->p_memsz);
        if (!range_in_file(elf, segment->p_offset, segment->p_filesz))
            return error_set(err,
                             "%s: segment %u (file offset 0x%llx, 0x%llx bytes) "
                             "extends past the end of the file (%zu bytes)",
                             path, i, (unsigned long long)segment->p_offset, (unsigned long long)segment->p_filesz,
                             elf->size);
        if (segment->p_memsz == 0)
            continue;
        if (!guest_ram_contains(ram, segment->p_paddr, segment->p_memsz))
            return error_set(err,
                             "%s: segment %u at physical address 0x%llx "
                             "(0x%llx bytes) is outside guest RAM (0x%llx-0x%llx)",
                             path, i, (unsigned long long)segment->p_paddr, (unsigned long long)segment->p_memsz,
                             (unsigned long long)ram->base, (unsigned long long)(ram->base + ram->size - 1));
        loadable++;
    }
    if (loadable == 0)
        return error_set(err, "%s: no loadable segments (no non-empty PT_LOAD)", path);
    return 0;
}

/* Moves a link-time address into the physical address space when it lies
 * in a segment loaded somewhere other than its virtual address. */
static uint64_t virtual_to_physical(const struct elf_file *elf, uint64_t address)
{
    for (unsigned i = 0; i < elf->segment_count; i++) {
        const Elf64_Phdr *segment = &elf->segments[i];
        if (segment->p_type == PT_LOAD && address - segment->p_vaddr < segment->p_memsz)
            return segment->p_paddr + (address - segment->p_vaddr);
    }
    return address;
}

/* The caller has checked that entry index lies inside the file. */
static void read_section_header(const struct elf_file *elf, uint64_t index, Elf64_Shdr *section)
{
    memcpy(section, elf->data + elf->header.e_shoff + index * sizeof *section, sizeof *section);
}

/* Validates the section header table and returns how many sections it has
 * (0 when the file has none). */
static int count_sections(const struct elf_file *elf, uint64_t *count, struct error *err)
{
    const char *path = elf->path;
    const Elf64_Ehdr *header = &elf->header;
    *count = 0;
    if (header->e_shoff == 0)
        return 0; /* stripped of section headers: no symbols */
    if (header->e_shentsize != sizeof(Elf64_Shdr))
        return error_set(err, "%s: section header entries are %u bytes, expected %zu", path, header->e_shentsize,
                         sizeof(Elf64_Shdr));
    uint64_t sections = header->e_shnum;
    if (sections == 0) {
        /* Extended numbering: the count is in section 0's sh_size. */
        if (!range_in_file(elf, header->e_shoff, sizeof(Elf64_Shdr)))
            return error_set(err,
                             "%s: section header table (offset 0x%llx) is past the "
                             "end of the file (%zu bytes)",
                             path, (unsigned long long)header->e_shoff, elf->size);
        Elf64_Shdr first;
        read_section_header(elf, 0, &first);
        sections = first.sh_size;
    }
    if (header->e_shoff > elf->size || sections > (elf->size - header->e_shoff) / sizeof(Elf64_Shdr))
        return error_set(err,
                         "%s: section header table (offset 0x%llx, %llu entries) "
                         "extends past the end of the file (%zu bytes)",
                         path, (unsigned long long)header->e_shoff, (unsigned long long)sections, elf->size);
    *count = sections;
    return 0;
}

/* Finds `tohost` in the symbol table. *address stays 0 when the file has no
 * symbol table or no such (defined) symbol. */
static int find_tohost(const struct elf_file *elf, uint64_t *address, struct error *err)
{
    const char *path = elf->path;
    static const char wanted[] = "tohost";
    *address = 0;

    uint64_t section_count;
    if (count_sections(elf, &section_count, err) != 0)
        return -1;
    for (uint64_t index = 0; index < section_count; index++) {
        Elf64_Shdr symtab;
        read_section_header(elf, index, &symtab);
        if (symtab.sh_type != SHT_SYMTAB)
            continue;

        if (symtab.sh_entsize != sizeof(Elf64_Sym))
            return error_set(err, "%s: symbol table entries are %llu bytes, expected %zu", path,
                             (unsigned long long)symtab.sh_entsize, sizeof(Elf64_Sym));
        if (!range_in_file(elf, symtab.sh_offset, symtab.sh_size))
            return error_set(err,
                             "%s: symbol table (section %llu, offset 0x%llx, 0x%llx "
                             "bytes) extends past the end of the file (%zu bytes)",
                             path, (unsigned long long)index, (unsigned long long)symtab.sh_offset,
                             (unsigned long long)symtab.sh_size, elf->size);
        if (symtab.sh_link >= section_count)
            return error_set(err,
                             "%s: symbol table links to string table section %u, "
                             "but there are only %llu sections",
                             path, symtab.sh_link, (unsigned long long)section_count);
        Elf64_Shdr strtab;
        read_section_header(elf, symtab.sh_link, &strtab);
        if (strtab.sh_type != SHT_STRTAB)
            return error_set(err,
                             "%s: symbol table's string table (section %u) has type %u, "
                             "not SHT_STRTAB",
                             path, symtab.sh_link, strtab.sh_type);
        if (!range_in_file(elf, strtab.sh_offset, strtab.sh_size))
            return error_set(err,
                             "%s: string table (section %u, offset 0x%llx, 0x%llx "
                             "bytes) extends past the end of the file (%zu bytes)",
                             path, symtab.sh_link, (unsigned long long)strtab.sh_offset,
                             (unsigned long long)strtab.sh_size, elf->size);

        const uint8_t *names = elf->data + strtab.sh_offset;
        uint64_t symbol_count = symtab.sh_size / sizeof(Elf64_Sym);
        for (uint64_t s = 0; s < symbol_count; s++) {
            Elf64_Sym symbol;
            memcpy(&symbol, elf->data + symtab.sh_offset + s * sizeof symbol, sizeof symbol);
            if (symbol.st_shndx == SHN_UNDEF)
                continue;
            /* The comparison includes the terminating NUL, and only runs
             * when the whole name lies inside the string table. */
            if (symbol.st_name < strtab.sh_size && strtab.sh_size - symbol.st_name >= sizeof wanted &&
                memcmp(names + symbol.st_name, wanted, sizeof wanted) == 0) {
                *address = symbol.st_value;
                return 0;
            }
        }
        return 0; /* an ELF file has at most one SHT_SYMTAB */
    }
    return 0;
}

/* Zero-fill source for the part of a segment beyond its file bytes. */
static const uint8_t zero_block[64 * 1024];

/* Copies one segment's file bytes and zeroes the rest of it. */
static int load_segment(const struct elf_file *elf, struct machine *machine, const Elf64_Phdr *segment)
{
    if (segment->p_filesz > 0 &&
        machine_ram_write(machine, segment->p_paddr, elf->data + segment->p_offset, segment->p_filesz) != 0)
        return -1;
    for (uint64_t zeroed = segment->p_filesz; zeroed < segment->p_memsz;) {
        uint64_t chunk = segment->p_memsz - zeroed;
        if (chunk > sizeof zero_block)
            chunk = sizeof zero_block;
        if (machine_ram_write(machine, segment->p_paddr + zeroed, zero_block, chunk) != 0)
            return -1;
        zeroed += chunk;
    }
    return 0;
}

static int load_segments(const struct elf_file *elf, struct machine *machine, struct error *err)
{
    for (unsigned i = 0; i < elf->segment_count; i++) {
        const Elf64_Phdr *segment = &elf->segments[i];
        if (segment->p_type != PT_LOAD || segment->p_memsz == 0)
            continue;
        /* check_segments has checked this against guest RAM already; this
         * is the backstop should machine_ram_write ever refuse a range. */
        if (load_segment(elf, machine, segment) != 0)
            return error_set(err,
                             "%s: segment %u at physical address 0x%llx (0x%llx bytes) "
                             "is outside guest RAM",
                             elf->path, i, (unsigned long long)segment->p_paddr, (unsigned long long)segment->p_memsz);
    }
    return 0;
}

static int load(struct elf_file *elf, struct machine *machine, struct elf_load_result *result, struct error *err)
{
    const char *path = elf->path;
    if (read_file(elf, err) != 0 || check_header(elf, err) != 0 || read_segments(elf, err) != 0 ||
        check_segments(elf, &machine->ram, err) != 0)
        return -1;

    uint64_t entry = virtual_to_physical(elf, elf->header.e_entry);
    if (!guest_ram_contains(&machine->ram, entry, 2))
        return error_set(err, "%s: entry point 0x%llx is outside guest RAM (0x%llx-0x%llx)", path,
                         (unsigned long long)entry, (unsigned long long)machine->ram.base,
                         (unsigned long long)(machine->ram.base + machine->ram.size - 1));

    uint64_t tohost = 0;
    if (find_tohost(elf, &tohost, err) != 0)
        return -1;
    if (tohost != 0) {
        tohost = virtual_to_physical(elf, tohost);
        /* HTIF watches this word in RAM; anywhere else it could never be
         * written by the guest's stores to RAM. */
        if (!guest_ram_contains(&machine->ram, tohost, 8))
            return error_set(err, "%s: the tohost symbol (0x%llx) is outside guest RAM", path,
                             (unsigned long long)tohost);
    }

    if (load_segments(elf, machine, err) != 0)
        return -1;
    result->entry = entry;
    result->tohost_address = tohost;
    return 0;
}

int elf_load(struct machine *machine, const char *path, struct elf_load_result *result, struct error *err)
{
    struct elf_file elf;
    memset(&elf, 0, sizeof elf);
    elf.path = path;
    int status = load(&elf, machine, result, err);
    free(elf.segments);
    free(elf.data);
    return status;
}
