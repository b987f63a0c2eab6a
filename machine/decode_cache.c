/* The decode cache's page table. Pages themselves are allocated lazily by
 * the fetch path (hart_fetch_translate) and freed here. */
#include "decode_cache.h"

#include <stdlib.h>
#include <string.h>

int decode_cache_init(struct decode_cache *cache, uint64_t page_count, struct error *err)
{
    memset(cache, 0, sizeof *cache);
    if (page_count > SIZE_MAX / sizeof *cache->pages)
        return error_set(err, "decode cache: %llu pages is too many for this host", (unsigned long long)page_count);
    /* calloc(0) may return NULL; one slot keeps "NULL means failure". */
    size_t entries = page_count ? (size_t)page_count : 1;
    cache->pages = calloc(entries, sizeof *cache->pages);
    if (!cache->pages)
        return error_set(err, "decode cache: out of memory for %llu page pointers", (unsigned long long)page_count);
    cache->page_count = page_count;
    return 0;
}

/* Safe to call on a cache that failed to initialise or was destroyed. */
void decode_cache_destroy(struct decode_cache *cache)
{
    if (cache->pages) {
        for (uint64_t page = 0; page < cache->page_count; page++)
            free(cache->pages[page]);
        free(cache->pages);
    }
    memset(cache, 0, sizeof *cache);
}
