/* CRC-32C, two ways (see crc32c.h for the definition).
 *
 * Everything below works on the raw CRC register: no preset, no final
 * inversion. crc32c_extend() adds those, so both implementations compute
 * the same function and can be checked against each other.
 *
 * Portable: slicing-by-8. byte_table[k][b] is the register contribution of
 * byte value b followed by k zero bytes, so eight bytes are folded into the
 * register with eight independent table lookups per step.
 *
 * x86-64 with SSE4.2: the crc32 instruction folds 8 bytes per instruction
 * but has a latency of 3 cycles, so one chain of them runs at a third of
 * the instruction's throughput. We therefore cut a long buffer into three
 * lanes of equal length L, run three independent chains, and join them.
 * Joining uses linearity: feeding bytes B to register x gives
 *     R(x, B) = Z_L(x) ^ R(0, B)
 * where Z_L(x) is the register after feeding L zero bytes to x, a linear
 * map of the 32 register bits. So for lanes A, B, C:
 *     R(r, A||B||C) = Z_3L(r) ^ Z_2L(R(0, A)) ^ Z_L(R(0, B)) ^ R(0, C)
 * All three lanes start from 0, so the next three chains need not wait
 * for the join of the previous ones: the CPU overlaps the join's table
 * lookups with the next lanes' crc32 instructions. Z_L, Z_2L and Z_3L are
 * precomputed as four 256-entry tables each (one per register byte), so
 * a join is twelve lookups. */
#include "crc32c.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define CRC32C_HAVE_X86_HARDWARE 1
#endif

#define CRC32C_POLYNOMIAL_REFLECTED 0x82F63B78u

static uint32_t byte_table[8][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

#ifdef CRC32C_HAVE_X86_HARDWARE
/* A linear map of the 32-bit register, applied one register byte at a time. */
struct register_map {
    uint32_t by_byte[4][256];
};

static uint32_t register_map_apply(const struct register_map *map, uint32_t value)
{
    return map->by_byte[0][value & 0xff] ^ map->by_byte[1][(value >> 8) & 0xff] ^
           map->by_byte[2][(value >> 16) & 0xff] ^ map->by_byte[3][value >> 24];
}

/* Lane lengths for the three-lane hardware loop, longest first, multiples
 * of 8. 3 x 1360 = 4080, so a 4 KiB page (or a one-page record body of
 * 4112 bytes) is one three-lane chunk and a short tail; 256 keeps shorter
 * pieces on three lanes too. Since joins are off the critical path, longer
 * lanes measured no faster on 4 MiB bodies. */
static const size_t lane_lengths[] = { 1360, 256 };
#define LANE_LENGTH_COUNT (sizeof lane_lengths / sizeof lane_lengths[0])
static struct register_map zeros_one_lane[LANE_LENGTH_COUNT];    /* Z_L  */
static struct register_map zeros_two_lanes[LANE_LENGTH_COUNT];   /* Z_2L */
static struct register_map zeros_three_lanes[LANE_LENGTH_COUNT]; /* Z_3L */
static bool use_hardware;

static uint32_t feed_zero_bytes(uint32_t value, size_t count)
{
    for (size_t i = 0; i < count; i++)
        value = (value >> 8) ^ byte_table[0][value & 0xff];
    return value;
}

/* Builds the by-byte tables of a linear map from its images of the 32
 * single-bit registers. */
static void register_map_from_basis(struct register_map *map, const uint32_t image_of_bit[32])
{
    for (unsigned byte = 0; byte < 4; byte++) {
        for (unsigned value = 0; value < 256; value++) {
            uint32_t image = 0;
            for (unsigned bit = 0; bit < 8; bit++)
                if (value & (1u << bit))
                    image ^= image_of_bit[8 * byte + bit];
            map->by_byte[byte][value] = image;
        }
    }
}
#endif

static void build_tables(void)
{
    for (unsigned value = 0; value < 256; value++) {
        uint32_t crc = value;
        for (unsigned bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ ((crc & 1) ? CRC32C_POLYNOMIAL_REFLECTED : 0);
        byte_table[0][value] = crc;
    }
    for (unsigned k = 1; k < 8; k++)
        for (unsigned value = 0; value < 256; value++)
            byte_table[k][value] = (byte_table[k - 1][value] >> 8) ^ byte_table[0][byte_table[k - 1][value] & 0xff];
#ifdef CRC32C_HAVE_X86_HARDWARE
    for (size_t i = 0; i < LANE_LENGTH_COUNT; i++) {
        uint32_t one_lane[32], two_lanes[32], three_lanes[32];
        for (unsigned bit = 0; bit < 32; bit++) {
            one_lane[bit] = feed_zero_bytes(1u << bit, lane_lengths[i]);
            two_lanes[bit] = feed_zero_bytes(one_lane[bit], lane_lengths[i]);
            three_lanes[bit] = feed_zero_bytes(two_lanes[bit], lane_lengths[i]);
        }
        register_map_from_basis(&zeros_one_lane[i], one_lane);
        register_map_from_basis(&zeros_two_lanes[i], two_lanes);
        register_map_from_basis(&zeros_three_lanes[i], three_lanes);
    }
    __builtin_cpu_init();
    use_hardware = __builtin_cpu_supports("sse4.2");
#endif
}

static uint64_t load_u64_le(const uint8_t *p)
{
    /* Byte by byte so the result does not depend on host byte order; the
     * compiler turns this into one load on little-endian hosts. */
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 |
           (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static uint32_t raw_portable(uint32_t value, const uint8_t *p, size_t length)
{
    while (length >= 8) {
        uint64_t word = load_u64_le(p) ^ value;
        value = byte_table[7][word & 0xff] ^ byte_table[6][(word >> 8) & 0xff] ^ byte_table[5][(word >> 16) & 0xff] ^
                byte_table[4][(word >> 24) & 0xff] ^ byte_table[3][(word >> 32) & 0xff] ^
                byte_table[2][(word >> 40) & 0xff] ^ byte_table[1][(word >> 48) & 0xff] ^ byte_table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--)
        value = (value >> 8) ^ byte_table[0][(value ^ *p++) & 0xff];
    return value;
}

#ifdef CRC32C_HAVE_X86_HARDWARE
__attribute__((target("sse4.2"))) static uint32_t raw_hardware(uint32_t value, const uint8_t *p, size_t length)
{
    for (size_t i = 0; i < LANE_LENGTH_COUNT; i++) {
        size_t lane = lane_lengths[i];
        while (length >= 3 * lane) {
            uint64_t a = 0, b = 0, c = 0;
            for (size_t offset = 0; offset < lane; offset += 8) {
                a = _mm_crc32_u64(a, load_u64_le(p + offset));
                b = _mm_crc32_u64(b, load_u64_le(p + lane + offset));
                c = _mm_crc32_u64(c, load_u64_le(p + 2 * lane + offset));
            }
            value = register_map_apply(&zeros_three_lanes[i], value) ^
                    register_map_apply(&zeros_two_lanes[i], (uint32_t)a) ^
                    register_map_apply(&zeros_one_lane[i], (uint32_t)b) ^ (uint32_t)c;
            p += 3 * lane;
            length -= 3 * lane;
        }
    }
    uint64_t wide = value;
    for (; length >= 8; p += 8, length -= 8)
        wide = _mm_crc32_u64(wide, load_u64_le(p));
    value = (uint32_t)wide;
    for (; length > 0; p++, length--)
        value = _mm_crc32_u8(value, *p);
    return value;
}
#endif

uint32_t crc32c_extend_portable(uint32_t crc, const void *data, size_t length)
{
    pthread_once(&tables_once, build_tables);
    return ~raw_portable(~crc, data, length);
}

uint32_t crc32c_extend(uint32_t crc, const void *data, size_t length)
{
    pthread_once(&tables_once, build_tables);
#ifdef CRC32C_HAVE_X86_HARDWARE
    if (use_hardware)
        return ~raw_hardware(~crc, data, length);
#endif
    return ~raw_portable(~crc, data, length);
}

const char *crc32c_implementation(void)
{
    pthread_once(&tables_once, build_tables);
#ifdef CRC32C_HAVE_X86_HARDWARE
    if (use_hardware)
        return "SSE4.2 crc32, three lanes";
#endif
    return "slicing-by-8 tables";
}
