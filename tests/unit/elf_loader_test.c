/* Unit tests for the ELF loader. Every file is generated at run time in a
 * temporary directory: a small valid RISC-V executable built by hand, and
 * broken variants of it. Prints "FAIL: ..." for each failed check and exits
 * 1 if any failed. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf_loader.h"
#include "machine_devices.h"

#include "test_check.h"
#include "test_machine.h"

#define RAM_SIZE (1u << 20)

static struct machine *machine;
static char directory[] = "/tmp/colo_elf_test_XXXXXX";

/* ---- building test files ---------------------------------------------- */

/* The test executable, laid out as a struct so that each part has a name
 * (the union gives the same bytes as they go into the file). */
#define PAYLOAD_FILESZ 32u
#define PAYLOAD_MEMSZ 64u /* the last 32 bytes are .bss */
#define SYMBOL_COUNT 5u
#define SECTION_COUNT 3u

struct test_layout {
    Elf64_Ehdr header;  /* 0x000 */
    Elf64_Phdr segment; /* 0x040: the one PT_LOAD */
    uint8_t padding[8];
    uint8_t payload[PAYLOAD_FILESZ];    /* 0x080 */
    Elf64_Sym symbols[SYMBOL_COUNT];    /* 0x0a0: null, undefined tohost, tohostx, _start, tohost */
    char strings[32];                   /* 0x118 */
    Elf64_Shdr sections[SECTION_COUNT]; /* 0x138: null, .symtab, .strtab */
};

struct test_file {
    union {
        struct test_layout layout;
        uint8_t bytes[sizeof(struct test_layout)];
    };
    size_t size; /* how much of bytes goes into the file */
};

#define PAYLOAD_OFFSET offsetof(struct test_layout, payload)
#define SYMTAB_OFFSET offsetof(struct test_layout, symbols)
#define STRTAB_OFFSET offsetof(struct test_layout, strings)
#define SECTIONS_OFFSET offsetof(struct test_layout, sections)
#define GOOD_FILE_SIZE sizeof(struct test_layout)

_Static_assert(offsetof(struct test_layout, segment) == 0x40, "program headers follow the header");
_Static_assert(offsetof(struct test_layout, payload) == 0x80, "payload offset");
_Static_assert(offsetof(struct test_layout, sections) == 0x138, "section headers offset");
_Static_assert(sizeof(struct test_layout) == 0x138 + SECTION_COUNT * sizeof(Elf64_Shdr),
               "no trailing padding: section headers end the file");

#define LOAD_ADDRESS (MACHINE_RAM_BASE + 0x1000u)
#define TOHOST_ADDRESS (LOAD_ADDRESS + PAYLOAD_FILESZ + 8) /* in .bss */

static const char string_table[] = "\0tohostx\0_start\0tohost";
#define NAME_TOHOSTX 1u
#define NAME_START 9u
#define NAME_TOHOST 16u
_Static_assert(sizeof string_table <= sizeof(((struct test_layout *)0)->strings), "strings fit");

static Elf64_Ehdr *header_of(struct test_file *file)
{
    return &file->layout.header;
}
static Elf64_Phdr *segment_of(struct test_file *file)
{
    return &file->layout.segment;
}
static Elf64_Shdr *section_of(struct test_file *file, unsigned index)
{
    return &file->layout.sections[index];
}
static Elf64_Sym *symbol_of(struct test_file *file, unsigned index)
{
    return &file->layout.symbols[index];
}

static uint8_t payload_byte(unsigned i)
{
    return (uint8_t)(0x13 + 7 * i);
}

static void build_good_file(struct test_file *file)
{
    memset(file, 0, sizeof *file);
    file->size = GOOD_FILE_SIZE;

    Elf64_Ehdr *header = header_of(file);
    memcpy(header->e_ident, ELFMAG, SELFMAG);
    header->e_ident[EI_CLASS] = ELFCLASS64;
    header->e_ident[EI_DATA] = ELFDATA2LSB;
    header->e_ident[EI_VERSION] = EV_CURRENT;
    header->e_type = ET_EXEC;
    header->e_machine = EM_RISCV;
    header->e_version = EV_CURRENT;
    header->e_entry = LOAD_ADDRESS;
    header->e_phoff = 0x40;
    header->e_shoff = SECTIONS_OFFSET;
    header->e_ehsize = sizeof(Elf64_Ehdr);
    header->e_phentsize = sizeof(Elf64_Phdr);
    header->e_phnum = 1;
    header->e_shentsize = sizeof(Elf64_Shdr);
    header->e_shnum = SECTION_COUNT;
    header->e_shstrndx = SHN_UNDEF;

    Elf64_Phdr *segment = segment_of(file);
    segment->p_type = PT_LOAD;
    segment->p_flags = PF_R | PF_W | PF_X;
    segment->p_offset = PAYLOAD_OFFSET;
    segment->p_vaddr = LOAD_ADDRESS;
    segment->p_paddr = LOAD_ADDRESS;
    segment->p_filesz = PAYLOAD_FILESZ;
    segment->p_memsz = PAYLOAD_MEMSZ;
    segment->p_align = 0x1000;

    for (unsigned i = 0; i < PAYLOAD_FILESZ; i++)
        file->layout.payload[i] = payload_byte(i);

    /* An undefined tohost (must be skipped) and a decoy whose name starts
     * with "tohost" (must not match) come before the real one. */
    *symbol_of(file,
               1) = (Elf64_Sym){ .st_name = NAME_TOHOST, .st_shndx = SHN_UNDEF, .st_value = MACHINE_RAM_BASE + 0x8000 };
    *symbol_of(file, 2) = (Elf64_Sym){ .st_name = NAME_TOHOSTX,
                                       .st_shndx = 1,
                                       .st_value = MACHINE_RAM_BASE + 0x9000,
                                       .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_OBJECT) };
    *symbol_of(file, 3) = (Elf64_Sym){
        .st_name = NAME_START, .st_shndx = 1, .st_value = LOAD_ADDRESS, .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC)
    };
    *symbol_of(file, 4) = (Elf64_Sym){ .st_name = NAME_TOHOST,
                                       .st_shndx = 1,
                                       .st_value = TOHOST_ADDRESS,
                                       .st_size = 8,
                                       .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_OBJECT) };
    memcpy(file->layout.strings, string_table, sizeof string_table);

    *section_of(file, 1) = (Elf64_Shdr){ .sh_type = SHT_SYMTAB,
                                         .sh_offset = SYMTAB_OFFSET,
                                         .sh_size = SYMBOL_COUNT * sizeof(Elf64_Sym),
                                         .sh_link = 2,
                                         .sh_info = 1,
                                         .sh_addralign = 8,
                                         .sh_entsize = sizeof(Elf64_Sym) };
    *section_of(file, 2) = (Elf64_Shdr){
        .sh_type = SHT_STRTAB, .sh_offset = STRTAB_OFFSET, .sh_size = sizeof string_table, .sh_addralign = 1
    };
}

static char *path_in_directory(const char *name)
{
    static char path[4][512];
    static unsigned next;
    char *slot = path[next++ % 4];
    snprintf(slot, sizeof path[0], "%s/%s", directory, name);
    return slot;
}

static const char *write_file(const char *name, const void *bytes, size_t size)
{
    const char *path = path_in_directory(name);
    FILE *stream = fopen(path, "wb");
    if (!stream || (size && fwrite(bytes, 1, size, stream) != size) || fclose(stream) != 0) {
        printf("FAIL: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return path;
}

static const char *write_test_file(const char *name, const struct test_file *file)
{
    return write_file(name, file->bytes, file->size);
}

/* ---- checking --------------------------------------------------------- */

static uint8_t *ram_at(uint64_t address)
{
    return machine->ram.host + (address - machine->ram.base);
}

static void fill_ram(uint8_t value)
{
    memset(machine->ram.host, value, machine->ram.size);
}

/* Loads path, expects failure, and checks that the message names the file
 * and contains each of the given phrases. */
static void expect_error_at(int line, const char *path, const char *phrase, const char *phrase2)
{
    struct error err;
    strcpy(err.message, "(no message)");
    struct elf_load_result result = { 0, 0 };
    int status = elf_load(machine, path, &result, &err);
    CHECK_AT(line, status == -1, "%s: loaded, expected an error containing \"%s\"", path, phrase);
    if (status != -1)
        return;
    CHECK_AT(line, strstr(err.message, path) != NULL, "error does not name the file: %s", err.message);
    CHECK_AT(line, strstr(err.message, phrase) != NULL, "error lacks \"%s\": %s", phrase, err.message);
    if (phrase2)
        CHECK_AT(line, strstr(err.message, phrase2) != NULL, "error lacks \"%s\": %s", phrase2, err.message);
}
#define EXPECT_ERROR(path, phrase) expect_error_at(__LINE__, (path), (phrase), NULL)
#define EXPECT_ERROR2(path, phrase, phrase2) expect_error_at(__LINE__, (path), (phrase), (phrase2))

/* ---- tests ------------------------------------------------------------ */

static void test_good_file(void)
{
    struct test_file file;
    build_good_file(&file);
    const char *path = write_test_file("good.elf", &file);

    fill_ram(0xaa);
    struct elf_load_result result = { 1, 1 };
    struct error err;
    int status = elf_load(machine, path, &result, &err);
    CHECK(status == 0, "good file refused: %s", status ? err.message : "");
    if (status != 0)
        return;
    CHECK(result.entry == LOAD_ADDRESS, "entry 0x%llx", (unsigned long long)result.entry);
    CHECK(result.tohost_address == TOHOST_ADDRESS, "tohost 0x%llx, expected 0x%llx",
          (unsigned long long)result.tohost_address, (unsigned long long)TOHOST_ADDRESS);
    for (unsigned i = 0; i < PAYLOAD_FILESZ; i++)
        CHECK(*ram_at(LOAD_ADDRESS + i) == payload_byte(i), "payload byte %u not loaded", i);
    for (unsigned i = PAYLOAD_FILESZ; i < PAYLOAD_MEMSZ; i++)
        CHECK(*ram_at(LOAD_ADDRESS + i) == 0, ".bss byte %u not zeroed", i);
    CHECK(*ram_at(LOAD_ADDRESS - 1) == 0xaa, "byte before the segment written");
    CHECK(*ram_at(LOAD_ADDRESS + PAYLOAD_MEMSZ) == 0xaa, "byte after the segment written");

    /* Without section headers there are no symbols: no tohost, no error. */
    header_of(&file)->e_shoff = 0;
    header_of(&file)->e_shnum = 0;
    path = write_test_file("no_sections.elf", &file);
    status = elf_load(machine, path, &result, &err);
    CHECK(status == 0, "file without sections refused: %s", status ? err.message : "");
    CHECK(result.tohost_address == 0, "tohost found without a symbol table");

    /* A symbol table without tohost. */
    build_good_file(&file);
    symbol_of(&file, 4)->st_name = NAME_START;
    path = write_test_file("no_tohost.elf", &file);
    status = elf_load(machine, path, &result, &err);
    CHECK(status == 0, "file without tohost refused: %s", status ? err.message : "");
    CHECK(result.tohost_address == 0, "tohost found though only tohostx exists");
}

/* Linked to run at a high virtual address but loaded into RAM: the entry
 * and tohost move with the segment. */
static void test_virtual_link_address(void)
{
    const uint64_t virtual_base = 0xffffffff80000000ull;
    struct test_file file;
    build_good_file(&file);
    segment_of(&file)->p_vaddr = virtual_base;
    header_of(&file)->e_entry = virtual_base + 4;
    symbol_of(&file, 4)->st_value = virtual_base + 0x30;
    const char *path = write_test_file("virtual.elf", &file);

    struct elf_load_result result;
    struct error err;
    int status = elf_load(machine, path, &result, &err);
    CHECK(status == 0, "virtually linked file refused: %s", status ? err.message : "");
    CHECK(result.entry == LOAD_ADDRESS + 4, "entry 0x%llx not moved to the load address",
          (unsigned long long)result.entry);
    CHECK(result.tohost_address == LOAD_ADDRESS + 0x30, "tohost 0x%llx not moved",
          (unsigned long long)result.tohost_address);
}

static void test_unreadable_files(void)
{
    const char *missing = path_in_directory("does-not-exist.elf");
    EXPECT_ERROR2(missing, "cannot open", strerror(ENOENT));

    EXPECT_ERROR(write_file("empty.elf", "", 0), "empty");
    EXPECT_ERROR(directory, "not a regular file");

    /* Too large: a sparse file just over the limit costs no disk space. */
    const char *huge = path_in_directory("huge.elf");
    int fd = open(huge, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0 && ftruncate(fd, (1ll << 30) + 1) == 0) {
        close(fd);
        EXPECT_ERROR(huge, "larger than");
    } else {
        if (fd >= 0)
            close(fd);
        printf("note: could not create a sparse 1 GiB file; size limit not tested\n");
    }
    unlink(huge);
}

static void test_not_elf(void)
{
    struct test_file file;
    build_good_file(&file);

    EXPECT_ERROR(write_file("truncated.elf", file.bytes, 20), "truncated ELF header");
    EXPECT_ERROR(write_file("truncated_ident.elf", file.bytes, 10), "truncated ELF header");
    EXPECT_ERROR(write_file("magic_only.elf", file.bytes, 3), "truncated ELF header");
    EXPECT_ERROR(write_file("ident_only.elf", file.bytes, EI_NIDENT + 4), "truncated ELF header");

    static const char script[] = "#!/bin/sh\necho not an executable\n";
    EXPECT_ERROR2(write_file("script.elf", script, sizeof script - 1), "not an ELF file", "23 21 2f 62");
    EXPECT_ERROR(write_file("tiny.elf", "ab", 2), "not an ELF file");

    file.bytes[EI_MAG3] = 'X';
    EXPECT_ERROR(write_test_file("bad_magic.elf", &file), "not an ELF file");
}

static void test_wrong_kind_of_elf(void)
{
    struct test_file file;

    build_good_file(&file);
    file.bytes[EI_CLASS] = ELFCLASS32;
    EXPECT_ERROR2(write_test_file("elf32.elf", &file), "32-bit", "ELF64");

    build_good_file(&file);
    file.bytes[EI_CLASS] = 7;
    EXPECT_ERROR(write_test_file("class7.elf", &file), "invalid ELF class");

    build_good_file(&file);
    file.bytes[EI_DATA] = ELFDATA2MSB;
    EXPECT_ERROR(write_test_file("big_endian.elf", &file), "big-endian");

    build_good_file(&file);
    file.bytes[EI_VERSION] = 2;
    EXPECT_ERROR(write_test_file("version2.elf", &file), "version");

    build_good_file(&file);
    header_of(&file)->e_machine = EM_X86_64;
    EXPECT_ERROR2(write_test_file("x86_64.elf", &file), "x86-64", "not RISC-V");

    build_good_file(&file);
    header_of(&file)->e_machine = 0x4242;
    EXPECT_ERROR2(write_test_file("machine4242.elf", &file), "16962", "not RISC-V");

    build_good_file(&file);
    header_of(&file)->e_type = ET_REL;
    EXPECT_ERROR(write_test_file("relocatable.elf", &file), "ET_REL");

    build_good_file(&file);
    header_of(&file)->e_type = ET_DYN;
    EXPECT_ERROR2(write_test_file("pie.elf", &file), "ET_DYN", "ET_EXEC");

    build_good_file(&file);
    header_of(&file)->e_type = ET_CORE;
    EXPECT_ERROR(write_test_file("core.elf", &file), "ET_EXEC");
}

/* A real host executable: /bin/true is an ELF for the host machine. */
static void test_host_executable(void)
{
    FILE *stream = fopen("/bin/true", "rb");
    if (!stream) {
        printf("note: no /bin/true; host executable not tested\n");
        return;
    }
    static uint8_t bytes[4 << 20];
    size_t size = fread(bytes, 1, sizeof bytes, stream);
    fclose(stream);
    const char *path = write_file("host_true.elf", bytes, size);
#if defined(__x86_64__)
    EXPECT_ERROR2(path, "x86-64", "not RISC-V");
#elif defined(__riscv)
    (void)path; /* a RISC-V host's /bin/true is a PIE: a different error */
#else
    EXPECT_ERROR(path, "not RISC-V");
#endif
}

static void test_bad_segments(void)
{
    struct test_file file;

    /* Below RAM. */
    build_good_file(&file);
    segment_of(&file)->p_paddr = 0x1000;
    EXPECT_ERROR2(write_test_file("below_ram.elf", &file), "outside guest RAM", "segment 0");

    /* Starting in RAM but running off its end. */
    build_good_file(&file);
    segment_of(&file)->p_paddr = MACHINE_RAM_BASE + RAM_SIZE - 16;
    EXPECT_ERROR2(write_test_file("past_ram.elf", &file), "outside guest RAM", "0x800ffff0");

    /* An address that wraps around when the size is added. */
    build_good_file(&file);
    segment_of(&file)->p_paddr = UINT64_MAX - 8;
    EXPECT_ERROR(write_test_file("wrapping.elf", &file), "outside guest RAM");

    /* File bytes past the end of the file. */
    build_good_file(&file);
    segment_of(&file)->p_offset = GOOD_FILE_SIZE - 4;
    EXPECT_ERROR2(write_test_file("segment_past_eof.elf", &file), "segment 0", "past the end of the file");

    build_good_file(&file);
    segment_of(&file)->p_offset = UINT64_MAX - 4;
    EXPECT_ERROR(write_test_file("segment_offset_wraps.elf", &file), "past the end of the file");

    build_good_file(&file);
    segment_of(&file)->p_filesz = PAYLOAD_MEMSZ + 1;
    EXPECT_ERROR(write_test_file("filesz_over_memsz.elf", &file), "more file bytes");

    /* No PT_LOAD at all, or only an empty one. */
    build_good_file(&file);
    segment_of(&file)->p_type = PT_NOTE;
    EXPECT_ERROR(write_test_file("no_load.elf", &file), "no loadable segments");

    build_good_file(&file);
    segment_of(&file)->p_filesz = 0;
    segment_of(&file)->p_memsz = 0;
    EXPECT_ERROR(write_test_file("empty_load.elf", &file), "no loadable segments");

    build_good_file(&file);
    header_of(&file)->e_phnum = 0;
    EXPECT_ERROR(write_test_file("no_phdrs.elf", &file), "no loadable segments");

    /* Program header table out of the file. */
    build_good_file(&file);
    header_of(&file)->e_phoff = GOOD_FILE_SIZE - 8;
    EXPECT_ERROR(write_test_file("phdrs_past_eof.elf", &file), "program header table");

    build_good_file(&file);
    header_of(&file)->e_phoff = UINT64_MAX - 16;
    EXPECT_ERROR(write_test_file("phoff_wraps.elf", &file), "program header table");

    build_good_file(&file);
    header_of(&file)->e_phnum = 1000;
    EXPECT_ERROR(write_test_file("many_phdrs.elf", &file), "program header table");

    build_good_file(&file);
    header_of(&file)->e_phentsize = 32;
    EXPECT_ERROR(write_test_file("small_phentsize.elf", &file), "program header entries");

    /* Entry point outside RAM. */
    build_good_file(&file);
    header_of(&file)->e_entry = 0x1000;
    EXPECT_ERROR(write_test_file("entry_outside.elf", &file), "entry point");
}

static void test_bad_sections(void)
{
    struct test_file file;

    build_good_file(&file);
    header_of(&file)->e_shoff = GOOD_FILE_SIZE - 64;
    EXPECT_ERROR(write_test_file("sections_past_eof.elf", &file), "section header table");

    build_good_file(&file);
    header_of(&file)->e_shoff = UINT64_MAX - 8;
    EXPECT_ERROR(write_test_file("shoff_wraps.elf", &file), "section header table");

    build_good_file(&file);
    header_of(&file)->e_shnum = 0xffff;
    EXPECT_ERROR(write_test_file("many_sections.elf", &file), "section header table");

    build_good_file(&file);
    header_of(&file)->e_shentsize = 40;
    EXPECT_ERROR(write_test_file("small_shentsize.elf", &file), "section header entries");

    /* Extended section numbering with an absurd count in section 0. */
    build_good_file(&file);
    header_of(&file)->e_shnum = 0;
    section_of(&file, 0)->sh_size = 1000000;
    EXPECT_ERROR(write_test_file("extended_sections.elf", &file), "section header table");

    build_good_file(&file);
    section_of(&file, 1)->sh_size = 0x100000;
    EXPECT_ERROR(write_test_file("symtab_past_eof.elf", &file), "symbol table");

    build_good_file(&file);
    section_of(&file, 1)->sh_offset = UINT64_MAX - 8;
    EXPECT_ERROR(write_test_file("symtab_offset_wraps.elf", &file), "symbol table");

    build_good_file(&file);
    section_of(&file, 1)->sh_entsize = 16;
    EXPECT_ERROR(write_test_file("symtab_entsize.elf", &file), "symbol table entries");

    build_good_file(&file);
    section_of(&file, 1)->sh_link = 9;
    EXPECT_ERROR(write_test_file("symtab_link.elf", &file), "string table");

    build_good_file(&file);
    section_of(&file, 1)->sh_link = 1;
    EXPECT_ERROR(write_test_file("symtab_link_self.elf", &file), "SHT_STRTAB");

    build_good_file(&file);
    section_of(&file, 2)->sh_size = 0x100000;
    EXPECT_ERROR(write_test_file("strtab_past_eof.elf", &file), "string table");

    /* A name offset past the string table is skipped, not followed. */
    build_good_file(&file);
    symbol_of(&file, 4)->st_name = 0xfffffff0u;
    struct elf_load_result result;
    struct error err;
    const char *path = write_test_file("name_past_strtab.elf", &file);
    int status = elf_load(machine, path, &result, &err);
    CHECK(status == 0 && result.tohost_address == 0, "symbol name past the string table");

    /* The name must end inside the string table: cut "tohost\0" short. */
    build_good_file(&file);
    section_of(&file, 2)->sh_size = sizeof string_table - 1;
    path = write_test_file("name_unterminated.elf", &file);
    status = elf_load(machine, path, &result, &err);
    CHECK(status == 0 && result.tohost_address == 0, "unterminated tohost name matched");

    build_good_file(&file);
    symbol_of(&file, 4)->st_value = 0x2000;
    EXPECT_ERROR(write_test_file("tohost_outside.elf", &file), "tohost");
}

/* Every check happens before guest RAM is touched. */
static void test_failure_leaves_ram_alone(void)
{
    struct test_file file;
    build_good_file(&file);
    section_of(&file, 1)->sh_link = 9; /* fails after the segments were checked */
    const char *path = write_test_file("late_failure.elf", &file);
    fill_ram(0x5c);
    EXPECT_ERROR(path, "string table");
    for (unsigned i = 0; i < PAYLOAD_MEMSZ; i++) {
        if (*ram_at(LOAD_ADDRESS + i) != 0x5c) {
            CHECK(0, "a failed load wrote guest RAM at +%u", i);
            break;
        }
    }
}

/* Damaged files must fail cleanly (or load), never crash or read out of
 * bounds: run under a sanitizer or valgrind to get the full value. */
static void test_damaged_files(void)
{
    struct test_file good;
    build_good_file(&good);
    struct elf_load_result result;
    struct error err;

    for (size_t length = 0; length < GOOD_FILE_SIZE; length++) {
        const char *path = write_file("cut.elf", good.bytes, length);
        int status = elf_load(machine, path, &result, &err);
        /* Cut anywhere before the end, the section table is incomplete. */
        CHECK(status == -1, "file cut to %zu bytes loaded", length);
        if (status == -1)
            CHECK(strstr(err.message, path) != NULL, "cut to %zu: message lacks the path: %s", length, err.message);
    }

    uint32_t random_state = 12345;
    for (unsigned round = 0; round < 3000; round++) {
        struct test_file file = good;
        unsigned flips = 1 + round % 4;
        for (unsigned f = 0; f < flips; f++) {
            random_state = random_state * 1664525u + 1013904223u;
            unsigned position = (random_state >> 8) % GOOD_FILE_SIZE;
            random_state = random_state * 1664525u + 1013904223u;
            file.bytes[position] = (uint8_t)(random_state >> 24);
        }
        const char *path = write_test_file("damaged.elf", &file);
        err.message[0] = '\0';
        if (elf_load(machine, path, &result, &err) != 0)
            CHECK(err.message[0] != '\0', "round %u: error without a message", round);
    }
}

static void remove_directory(void)
{
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", directory);
    if (system(command) != 0)
        printf("note: could not remove %s\n", directory);
}

int main(void)
{
    if (!mkdtemp(directory)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    machine = test_machine_create(&(struct test_machine_options){ .ram_size = RAM_SIZE });

    test_good_file();
    test_virtual_link_address();
    test_unreadable_files();
    test_not_elf();
    test_wrong_kind_of_elf();
    test_host_executable();
    test_bad_segments();
    test_bad_sections();
    test_failure_leaves_ram_alone();
    test_damaged_files();

    test_machine_destroy(machine);
    remove_directory();
    if (test_check_failures) {
        printf("%d check(s) failed\n", test_check_failures);
        return 1;
    }
    printf("elf_loader_test: all checks passed\n");
    return 0;
}
