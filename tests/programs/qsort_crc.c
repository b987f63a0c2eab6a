/* Compiled-code differential test: a generic quicksort (indirect calls
 * through a comparator), table-driven and bitwise CRC-32, and an
 * open-addressing hash table with deletion. Results are printed and
 * compared with known values; the exit status is the number of
 * mismatches. */
#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

static int failures;

static void expect(const char *what, uint64_t got, uint64_t expected)
{
    guest_puts(what);
    guest_puts(": ");
    guest_put_hex(got);
    if (got != expected) {
        guest_puts(" FAIL expected ");
        guest_put_hex(expected);
        failures++;
    }
    guest_puts("\n");
}

/* ---------------- pseudo-random numbers ---------------- */

static uint64_t rng_state = 0x853c49e6748fea9bull;

static uint32_t rng_next(void)
{
    /* PCG-XSH-RR 64/32 */
    uint64_t old = rng_state;
    rng_state = old * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

/* ---------------- quicksort ---------------- */

typedef int (*compare_fn)(const void *, const void *);

static void swap_bytes(unsigned char *a, unsigned char *b, size_t size)
{
    while (size--) {
        unsigned char t = *a;
        *a++ = *b;
        *b++ = t;
    }
}

static void sort(void *base, size_t count, size_t size, compare_fn compare)
{
    unsigned char *items = base;
    while (count > 1) {
        if (count < 8) {
            /* insertion sort for small ranges */
            for (size_t i = 1; i < count; i++)
                for (size_t j = i; j > 0 && compare(items + (j - 1) * size, items + j * size) > 0; j--)
                    swap_bytes(items + (j - 1) * size, items + j * size, size);
            return;
        }
        /* median of three to the end, Lomuto partition */
        size_t mid = count / 2, last = count - 1;
        if (compare(items + mid * size, items) < 0)
            swap_bytes(items + mid * size, items, size);
        if (compare(items + last * size, items) < 0)
            swap_bytes(items + last * size, items, size);
        if (compare(items + mid * size, items + last * size) < 0)
            swap_bytes(items + mid * size, items + last * size, size);
        size_t store = 0;
        for (size_t i = 0; i < last; i++) {
            if (compare(items + i * size, items + last * size) < 0) {
                swap_bytes(items + i * size, items + store * size, size);
                store++;
            }
        }
        swap_bytes(items + store * size, items + last * size, size);
        /* recurse into the smaller side, loop on the larger */
        if (store < count - store - 1) {
            sort(items, store, size, compare);
            items += (store + 1) * size;
            count -= store + 1;
        } else {
            sort(items + (store + 1) * size, count - store - 1, size, compare);
            count = store;
        }
    }
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int compare_i64_descending(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

struct record {
    uint16_t key;
    uint8_t tag;
    uint32_t order; /* original position: the sort key after key */
};

static int compare_record(const void *a, const void *b)
{
    const struct record *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* ---------------- CRC-32 (IEEE, reflected) ---------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_table(const void *data, size_t length)
{
    const unsigned char *p = data;
    uint32_t crc = 0xffffffffu;
    while (length--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

static uint32_t crc32_bitwise(const void *data, size_t length)
{
    const unsigned char *p = data;
    uint32_t crc = 0xffffffffu;
    while (length--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
    }
    return ~crc;
}

/* ---------------- hash table ---------------- */

#define TABLE_SIZE 1024 /* power of two */
#define EMPTY 0
#define DELETED 1

struct slot {
    uint64_t key; /* EMPTY, DELETED, or a key >= 2 */
    uint64_t value;
};

static struct slot table[TABLE_SIZE];
static unsigned table_count;
static uint64_t probes;

static uint64_t hash64(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ull;
    key ^= key >> 33;
    return key;
}

static struct slot *table_find(uint64_t key)
{
    size_t i = hash64(key) & (TABLE_SIZE - 1);
    for (;;) {
        probes++;
        if (table[i].key == key)
            return &table[i];
        if (table[i].key == EMPTY)
            return NULL;
        i = (i + 1) & (TABLE_SIZE - 1);
    }
}

static void table_put(uint64_t key, uint64_t value)
{
    struct slot *existing = table_find(key);
    if (existing) {
        existing->value = value;
        return;
    }
    size_t i = hash64(key) & (TABLE_SIZE - 1);
    while (table[i].key != EMPTY && table[i].key != DELETED)
        i = (i + 1) & (TABLE_SIZE - 1);
    table[i].key = key;
    table[i].value = value;
    table_count++;
}

static int table_remove(uint64_t key)
{
    struct slot *slot = table_find(key);
    if (!slot)
        return 0;
    slot->key = DELETED;
    table_count--;
    return 1;
}

static uint64_t string_key(const char *s)
{
    /* FNV-1a, kept away from EMPTY/DELETED */
    uint64_t h = 0xcbf29ce484222325ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
    return h < 2 ? h + 2 : h;
}

/* ---------------- main ---------------- */

#define COUNT 2000
static uint32_t numbers[COUNT];
static int64_t signed_numbers[COUNT];
static struct record records[500];

int main(void)
{
    crc_init();
    guest_puts("qsort_crc: crc\n");
    static const char check[] = "123456789";
    expect("crc32 table(123456789)", crc32_table(check, 9), 0xcbf43926);
    expect("crc32 bitwise(123456789)", crc32_bitwise(check, 9), 0xcbf43926);
    expect("crc32 empty", crc32_table(check, 0), 0);
    static const char fox[] = "The quick brown fox jumps over the lazy dog";
    expect("crc32 fox", crc32_table(fox, sizeof fox - 1), 0x414fa339);

    guest_puts("qsort_crc: sort\n");
    for (int i = 0; i < COUNT; i++)
        numbers[i] = rng_next();
    expect("first random", numbers[0], 0x152ca78d);
    uint32_t crc_before = crc32_table(numbers, sizeof numbers);
    uint64_t sum_before = 0;
    for (int i = 0; i < COUNT; i++)
        sum_before += numbers[i];
    sort(numbers, COUNT, sizeof numbers[0], compare_u32);
    uint64_t unsorted = 0, sum_after = 0;
    for (int i = 0; i < COUNT; i++) {
        sum_after += numbers[i];
        if (i && numbers[i - 1] > numbers[i])
            unsorted++;
    }
    expect("u32 out of order after sort", unsorted, 0);
    expect("u32 sum kept", sum_after - sum_before, 0);
    expect("u32 crc before", crc_before, 0x4d29ae61);
    expect("u32 crc after", crc32_table(numbers, sizeof numbers), 0xdf9a2ff5);
    expect("u32 min", numbers[0], 0x00579c66);
    expect("u32 max", numbers[COUNT - 1], 0xffea2add);

    for (int i = 0; i < COUNT; i++)
        signed_numbers[i] = (int64_t)(((uint64_t)rng_next() << 32) | rng_next());
    sort(signed_numbers, COUNT, sizeof signed_numbers[0], compare_i64_descending);
    unsorted = 0;
    for (int i = 1; i < COUNT; i++)
        if (signed_numbers[i - 1] < signed_numbers[i])
            unsorted++;
    expect("i64 out of order after descending sort", unsorted, 0);
    expect("i64 crc after", crc32_table(signed_numbers, sizeof signed_numbers), 0x7074396b);
    expect("i64 largest", (uint64_t)signed_numbers[0], 0x7fe45fbb807de0fc);
    expect("i64 smallest", (uint64_t)signed_numbers[COUNT - 1], 0x806071acc4f9b518);

    for (unsigned i = 0; i < 500; i++) {
        records[i].key = (uint16_t)(rng_next() % 50);
        records[i].tag = (uint8_t)i;
        records[i].order = i;
    }
    sort(records, 500, sizeof records[0], compare_record);
    unsorted = 0;
    uint64_t tag_sum = 0;
    for (int i = 1; i < 500; i++)
        if (compare_record(&records[i - 1], &records[i]) >= 0)
            unsorted++;
    for (int i = 0; i < 500; i++)
        tag_sum = tag_sum * 31 + records[i].tag;
    expect("records out of order", unsorted, 0);
    expect("records tag hash", tag_sum, 0x1622b51392de80a0);

    guest_puts("qsort_crc: hash table\n");
    static const char *const words[] = {
        "alpha",   "bravo", "charlie", "delta",  "echo",     "foxtrot", "golf",   "hotel",  "india",
        "juliett", "kilo",  "lima",    "mike",   "november", "oscar",   "papa",   "quebec", "romeo",
        "sierra",  "tango", "uniform", "victor", "whiskey",  "xray",    "yankee", "zulu",
    };
    const unsigned word_count = sizeof words / sizeof words[0];
    for (unsigned i = 0; i < word_count; i++)
        table_put(string_key(words[i]), i * i);
    for (uint64_t k = 2; k < 600; k++)
        table_put(hash64(k) | 2, k);
    expect("table count", table_count, word_count + 598);
    uint64_t found = 0, value_sum = 0;
    for (unsigned i = 0; i < word_count; i++) {
        struct slot *slot = table_find(string_key(words[i]));
        if (slot) {
            found++;
            value_sum += slot->value;
        }
    }
    expect("words found", found, word_count);
    expect("word values", value_sum, 5525);
    uint64_t removed = 0;
    for (uint64_t k = 2; k < 600; k += 2)
        removed += (uint64_t)table_remove(hash64(k) | 2);
    expect("removed", removed, 299);
    expect("removed again", (uint64_t)table_remove(hash64(2) | 2), 0);
    expect("table count after removal", table_count, word_count + 299);
    found = 0;
    for (uint64_t k = 2; k < 600; k++)
        if (table_find(hash64(k) | 2))
            found++;
    expect("numbers found after removal", found, 299);
    table_put(string_key("zulu"), 77);
    expect("update in place", table_find(string_key("zulu"))->value, 77);
    expect("missing word", (uint64_t)(table_find(string_key("omega")) == NULL), 1);
    expect("probe count", probes, 0xead);
    expect("table crc", crc32_table(table, sizeof table), 0xe67fd6af);

    guest_puts("qsort_crc: ");
    guest_put_decimal((uint64_t)failures);
    guest_puts(" failures\n");
    return failures;
}
