#include "guest_ram.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int guest_ram_init(struct guest_ram *ram, uint64_t base, uint64_t size, struct error *err)
{
    memset(ram, 0, sizeof *ram);
    if (size == 0 || size % GUEST_PAGE_SIZE != 0)
        return error_set(err, "RAM size %llu is not a positive multiple of 4 KiB", (unsigned long long)size);
    void *host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (host == MAP_FAILED)
        return error_set_errno(err, "cannot map %llu MiB of guest RAM", (unsigned long long)(size >> 20));
    /* Huge pages where the host allows them: a booting guest touches
     * hundreds of megabytes, and a host page fault per 4 KiB cost a tenth
     * of a Linux boot. Only advice; the 4 KiB dirty log is unaffected. */
    (void)madvise(host, size, MADV_HUGEPAGE);
    ram->base = base;
    ram->size = size;
    ram->host = host;
    ram->page_count = size >> GUEST_PAGE_SHIFT;
    ram->dirty = calloc(ram->page_count, 1);
    ram->has_decoded_code = calloc(ram->page_count, 1);
    ram->watched_page = UINT64_MAX;
    if (!ram->dirty || !ram->has_decoded_code) {
        guest_ram_destroy(ram);
        return error_set(err, "out of memory for the dirty log");
    }
    return 0;
}

void guest_ram_destroy(struct guest_ram *ram)
{
    if (ram->host)
        munmap(ram->host, ram->size);
    free(ram->preimages.page_indices);
    free(ram->preimages.data);
    free(ram->dirty);
    free(ram->has_decoded_code);
    memset(ram, 0, sizeof *ram);
}

uint64_t guest_ram_dirty_log_read_and_clear(struct guest_ram *ram, uint64_t *bitmap)
{
    uint64_t count = 0;
    size_t words = guest_ram_bitmap_words(ram);
    memset(bitmap, 0, words * sizeof *bitmap);
    /* Eight log bytes at a time: a checkpoint's log is mostly clean, and
     * this runs while the VM is paused. */
    uint64_t page = 0;
    for (; page + 8 <= ram->page_count; page += 8) {
        uint64_t eight;
        memcpy(&eight, ram->dirty + page, sizeof eight);
        if (!eight)
            continue;
        for (unsigned i = 0; i < 8; i++) {
            if (ram->dirty[page + i]) {
                bitmap[(page + i) / 64] |= 1ull << ((page + i) % 64);
                count++;
            }
        }
        memset(ram->dirty + page, 0, 8);
    }
    for (; page < ram->page_count; page++) {
        if (ram->dirty[page]) {
            bitmap[page / 64] |= 1ull << (page % 64);
            count++;
            ram->dirty[page] = 0;
        }
    }
    return count;
}

bool guest_ram_page_is_zero(const uint8_t *page)
{
    uint64_t first;
    memcpy(&first, page, sizeof first);
    if (first != 0)
        return false;
    /* The whole page without a branch per word (the compiler vectorises). */
    uint64_t any = 0;
    for (size_t offset = 0; offset < GUEST_PAGE_SIZE; offset += sizeof(uint64_t)) {
        uint64_t word;
        memcpy(&word, page + offset, sizeof word);
        any |= word;
    }
    return any == 0;
}

size_t guest_ram_bitmap_to_pages(const uint64_t *bitmap, size_t words, uint64_t *pages)
{
    size_t count = 0;
    for (size_t word = 0; word < words; word++) {
        for (uint64_t bits = bitmap[word]; bits; bits &= bits - 1)
            pages[count++] = word * 64 + (uint64_t)__builtin_ctzll(bits);
    }
    return count;
}

static void capture_preimage(struct guest_ram *ram, uint64_t page)
{
    struct guest_ram_preimages *set = &ram->preimages;
    if (set->count == set->capacity) {
        size_t capacity = set->capacity ? set->capacity * 2 : 256;
        uint64_t *indices = realloc(set->page_indices, capacity * sizeof *indices);
        if (indices)
            set->page_indices = indices;
        uint8_t *data = indices ? realloc(set->data, capacity * GUEST_PAGE_SIZE) : NULL;
        if (!indices || !data) {
            ram->preimages_failed = true;
            return;
        }
        set->data = data;
        set->capacity = capacity;
    }
    set->page_indices[set->count] = page;
    memcpy(set->data + set->count * GUEST_PAGE_SIZE, ram->host + (page << GUEST_PAGE_SHIFT), GUEST_PAGE_SIZE);
    set->count++;
}

void guest_ram_before_write(struct guest_ram *ram, uint64_t address, uint64_t length)
{
    if (!ram->dirty_log_enabled || length == 0)
        return;
    uint64_t first = (address - ram->base) >> GUEST_PAGE_SHIFT;
    uint64_t last = (address + length - 1 - ram->base) >> GUEST_PAGE_SHIFT;
    for (uint64_t page = first; page <= last; page++) {
        if (ram->dirty[page])
            continue;
        if (ram->preimages_enabled && !ram->preimages_capture_paused)
            capture_preimage(ram, page);
        ram->dirty[page] = 1;
    }
}

void guest_ram_preimages_enable(struct guest_ram *ram, bool enable)
{
    ram->preimages_enabled = enable && ram->dirty_log_enabled;
    guest_ram_preimages_reset(ram);
}

/* Writes the pre-images back, but those of pages `overwritten` (if not
 * NULL) names; how many, or -1 if capturing had failed. */
static int64_t restore_preimages(struct guest_ram *ram, bool (*overwritten)(void *, uint64_t), void *opaque)
{
    if (ram->preimages_failed)
        return -1;
    const struct guest_ram_preimages *set = &ram->preimages;
    int64_t restored = 0;
    for (size_t i = 0; i < set->count; i++) {
        uint64_t page = set->page_indices[i];
        if (overwritten && overwritten(opaque, page))
            continue;
        memcpy(ram->host + (page << GUEST_PAGE_SHIFT), set->data + i * GUEST_PAGE_SIZE, GUEST_PAGE_SIZE);
        restored++;
    }
    return restored;
}

int64_t guest_ram_preimages_rollback(struct guest_ram *ram)
{
    return restore_preimages(ram, NULL, NULL);
}

int64_t guest_ram_preimages_rollback_before_load(struct guest_ram *ram, bool (*overwritten)(void *, uint64_t),
                                                 void *opaque)
{
    int64_t restored = restore_preimages(ram, overwritten, opaque);
    if (restored >= 0)
        ram->preimages_capture_paused = true;
    return restored;
}

void guest_ram_preimages_reset(struct guest_ram *ram)
{
    ram->preimages.count = 0;
    ram->preimages_failed = false;
    ram->preimages_capture_paused = false;
    memset(ram->dirty, 0, ram->page_count);
}
