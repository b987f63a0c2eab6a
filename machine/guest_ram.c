#include "guest_ram.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int guest_ram_init(struct guest_ram *ram, uint64_t base, uint64_t size, struct error *err)
{
    memset(ram, 0, sizeof *ram);
    if (size == 0 || size % GUEST_PAGE_SIZE != 0)
        return error_set(err, "RAM size %llu is not a positive multiple of 4 KiB",
                         (unsigned long long)size);
    void *host = mmap(NULL, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (host == MAP_FAILED)
        return error_set_errno(err, "cannot map %llu MiB of guest RAM",
                               (unsigned long long)(size >> 20));
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
    free(ram->dirty);
    free(ram->has_decoded_code);
    memset(ram, 0, sizeof *ram);
}

uint64_t guest_ram_dirty_log_read_and_clear(struct guest_ram *ram, uint64_t *bitmap)
{
    uint64_t count = 0;
    size_t words = guest_ram_bitmap_words(ram);
    memset(bitmap, 0, words * sizeof *bitmap);
    for (uint64_t page = 0; page < ram->page_count; page++) {
        if (ram->dirty[page]) {
            bitmap[page / 64] |= 1ull << (page % 64);
            count++;
        }
    }
    memset(ram->dirty, 0, ram->page_count);
    return count;
}
